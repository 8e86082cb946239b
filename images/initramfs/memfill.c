/* memfill MIB: touches MIB MiB of anonymous memory with a pattern unique to every 8-byte word,
 * then reads it all back and checks it. With MIB above the guest's RAM the kernel has to swap
 * (tier-3 swap test). Prints "memfill: MIB MiB ok" or the first bad word; exit 0 only if all
 * words came back. Anonymous memory costs one page fault per page and no system calls, which
 * matters where the guest kernel runs in the host's instruction emulator. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static uint64_t pattern(uint64_t i) { return i * 0x9e3779b97f4a7c15ull + 0x1234; }

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: memfill MIB\n");
		return 2;
	}
	size_t mib = strtoul(argv[1], NULL, 10);
	size_t words = mib << 17; /* 1 MiB = 2^17 words of 8 bytes */
	uint64_t *mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("memfill: mmap");
		return 1;
	}
	for (size_t i = 0; i < words; i++)
		mem[i] = pattern(i);
	for (size_t i = 0; i < words; i++) {
		if (mem[i] != pattern(i)) {
			printf("memfill: word %zu is %#llx, wrote %#llx\n", i,
			       (unsigned long long)mem[i], (unsigned long long)pattern(i));
			return 1;
		}
	}
	printf("memfill: %zu MiB ok\n", mib);
	return 0;
}
