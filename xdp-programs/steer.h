/* Map layouts shared by steer.bpf.c and the Rust loader
 * (engine/src/datapath/xdp/loader.rs mirrors these structs: keep them in step). */
#ifndef WIRESPEED_STEER_H
#define WIRESPEED_STEER_H

#include <linux/types.h>

/* Queues an XskMap can hold, and test flows one program matches. */
#define WS_MAX_QUEUES 256
#define WS_MAX_FLOWS 8

/* One test flow, matched on arriving packets: IP protocol, the local
 * (destination) address and a destination port range; optionally only from
 * one peer address, and one of that peer's source ports left to the kernel
 * (an iperf3 server's control connection shares its data streams' port). */
struct ws_flow {
	__u8 used;      /* 0 = empty slot */
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 pad;
	__u16 port_lo;  /* host byte order, inclusive */
	__u16 port_hi;
	__u8 addr[16];  /* IPv4 in the first 4 bytes; all zero = any address */
	__u16 kernel_sport; /* host byte order: from `peer`, passed (0 = none) */
	__u16 pad2;
	__u8 peer[16];  /* source address; all zero = any peer */
};

/* Per-CPU counters, by index. */
enum ws_counter {
	WS_SEEN = 0,        /* every packet the program ran on */
	WS_REDIRECTED = 1,  /* matched and handed to an AF_XDP socket */
	WS_PASSED = 2,      /* not ours: left to the kernel */
	WS_NO_SOCKET = 3,   /* matched, but no socket on that queue: passed */
	WS_COUNTERS = 4,
};

#endif
