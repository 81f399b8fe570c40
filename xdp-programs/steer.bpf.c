// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* wirespeed's steering program: redirect the test flows of each NIC queue
 * into the AF_XDP socket bound to that queue, and pass everything else
 * (ARP, SSH, the control connection) to the kernel untouched. A program
 * that took a whole queue would steal ping and ARP too. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "steer.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, WS_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WS_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct ws_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WS_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1;
}

/* `want` (16 bytes, all zero = any) against the packet's address `a`. */
static __always_inline int addr_matches(const __u8 *want, const __u8 *a, int len)
{
	int any = 1;
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (want[i])
			any = 0;
	if (any)
		return 1;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i >= len)
			break;
		if (want[i] != a[i])
			return 0;
	}
	return 1;
}

/* Frags-aware ("xdp.frags", BPF_F_XDP_HAS_FRAGS): a jumbo frame may arrive
 * as several buffers, and a driver refuses an MTU over one page to a program
 * not declared so (veth: "Peer MTU is too large to set XDP"). Only the first
 * buffer is read here (data..data_end), and the headers are all in it. */
SEC("xdp.frags")
int steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 family, proto;
	const __u8 *daddr, *saddr;
	int alen;
	void *l4;

	count(WS_SEEN);
	if ((void *)(eth + 1) > end)
		goto pass;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl < 5)
			goto pass;
		/* fragments after the first carry no ports */
		if (ip->frag_off & bpf_htons(0x1fff))
			goto pass;
		family = 4;
		proto = ip->protocol;
		daddr = (const __u8 *)&ip->daddr;
		saddr = (const __u8 *)&ip->saddr;
		alen = 4;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			goto pass;
		family = 6;
		proto = ip6->nexthdr; /* no extension headers on test flows */
		daddr = (const __u8 *)&ip6->daddr;
		saddr = (const __u8 *)&ip6->saddr;
		alen = 16;
		l4 = ip6 + 1;
	} else {
		goto pass;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		goto pass;
	/* UDP and TCP both start with source and destination ports */
	struct udphdr *ports = l4;
	if ((void *)(ports + 1) > end)
		goto pass;
	__u16 dport = bpf_ntohs(ports->dest);
	__u16 sport = bpf_ntohs(ports->source);

#pragma unroll
	for (__u32 i = 0; i < WS_MAX_FLOWS; i++) {
		__u32 key = i;
		struct ws_flow *f = bpf_map_lookup_elem(&flows, &key);
		if (!f || !f->used)
			continue;
		if (f->family != family || f->proto != proto)
			continue;
		if (dport < f->port_lo || dport > f->port_hi)
			continue;
		if (!addr_matches(f->addr, daddr, alen))
			continue;
		if (!addr_matches(f->peer, saddr, alen))
			continue;
		/* the one connection of this peer the kernel keeps */
		if (f->kernel_sport && sport == f->kernel_sport)
			goto pass;
		__u32 q = ctx->rx_queue_index;
		if (!bpf_map_lookup_elem(&xsks, &q)) {
			count(WS_NO_SOCKET);
			return XDP_PASS;
		}
		count(WS_REDIRECTED);
		return bpf_redirect_map(&xsks, q, XDP_PASS);
	}
pass:
	count(WS_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
