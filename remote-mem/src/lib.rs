//! Remote memory: wire protocol, memory server, client, RAM-ext and swap backends.
