/* vsock-echo PORT: listens on AF_VSOCK port PORT (any CID), prints
 * "REVENANT-VSOCK-LISTENING PORT" on stdout, accepts one connection and echoes
 * what it reads until the peer closes. Built statically by images/build for the
 * tier-3 hybrid vsock test (busybox has no vsock tool). */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_vm addr;
	char buf[4096];
	ssize_t n;
	int s, c;

	if (argc != 2) {
		fprintf(stderr, "usage: vsock-echo PORT\n");
		return 2;
	}
	s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0) {
		perror("socket(AF_VSOCK)");
		return 1;
	}
	memset(&addr, 0, sizeof(addr));
	addr.svm_family = AF_VSOCK;
	addr.svm_port = (unsigned int)atoi(argv[1]);
	addr.svm_cid = VMADDR_CID_ANY;
	if (bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(s, 1) < 0) {
		perror("bind/listen");
		return 1;
	}
	printf("REVENANT-VSOCK-LISTENING %u\n", addr.svm_port);
	fflush(stdout);
	c = accept(s, NULL, NULL);
	if (c < 0) {
		perror("accept");
		return 1;
	}
	while ((n = read(c, buf, sizeof(buf))) > 0) {
		if (write(c, buf, (size_t)n) != n) {
			perror("write");
			return 1;
		}
	}
	return n < 0;
}
