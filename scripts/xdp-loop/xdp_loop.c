/*
 * xdp_loop.c - minimal AF_XDP UDP sender/receiver built on libxdp, used as an
 * independent reference beside wirespeed's raw mode on the same veth pair.
 *
 * Build (Debian 12: libxdp-dev, libbpf-dev; a dynamic link needs no more):
 *   cc -O2 -Wall -Wextra -o xdp_loop xdp_loop.c -lxdp -lbpf
 * (`-static` also needs `-lelf -lz`). Run as root. rx loads
 * /usr/lib/x86_64-linux-gnu/bpf/xsk_def_xdp_prog_5.3.o (package libxdp1).
 *
 * Usage:
 *   xdp_loop tx IFACE QUEUE FRAME_SIZE SECONDS SRC_MAC DST_MAC SRC_IP DST_IP SRC_PORT DST_PORT
 *   xdp_loop rx IFACE QUEUE SECONDS DST_PORT
 * On a veth, frames sent on queue Q arrive on the peer's rx queue Q (veths
 * here get one queue per CPU), so give tx and rx the same QUEUE (0).
 *
 * Output: one JSON line on stdout at the end.
 *   {"role":"tx","frames":N,"bytes":N,"seconds":S,"pps":X,"mode":"copy"|"zerocopy"}
 *     frames = completions reaped (always <= frames put on the TX ring, which
 *     is asserted; a completion means the kernel consumed the frame, not
 *     that the peer got it: compare with rx); bytes = frames * FRAME_SIZE
 *     (no FCS); seconds = first submit to last completion reaped.
 *   {"role":"rx","frames":N,"bytes":N,"seconds":S,"pps":X,"gaps":N,"other":N}
 *     frames/bytes = frames whose UDP destination port is DST_PORT; seconds =
 *     first to last such frame; gaps = sequence discontinuities (a received
 *     sequence number != previous + 1, so a run of lost frames counts once);
 *     other = everything else the queue delivered (ARP, IPv6 ND, ...).
 *   On error or SIGINT/SIGTERM: one line on stderr, exit 1, and the XDP
 *   program and sockets are torn down first. Set XDP_LOOP_DEBUG=1 to see
 *   libxdp/libbpf messages and the socket's XDP_STATISTICS on stderr;
 *   otherwise the last library message is folded into the error line.
 *
 * tx: FRAME_SIZE must be 50..4096 and at most IFACE's MTU + 14 (1514 at MTU
 *   1500). One AF_XDP socket, XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD (no XDP
 *   program is attached on the sending side), XDP_USE_NEED_WAKEUP,
 *   XDP_ZEROCOPY tried first then XDP_COPY. UMEM 4096 frames x 4096 bytes; every frame is built
 *   once as Ethernet/IPv4/UDP (IPv4 checksum valid, UDP checksum 0) and only
 *   the 8-byte big-endian sequence number at the start of the UDP payload is
 *   rewritten per send. Batches of 64; a frame is reused only after its
 *   completion was reaped (an in-flight bitmap rejects any completion address
 *   that is not outstanding). After SECONDS it stops producing and drains the
 *   completion ring for at most 500 ms (still kicking, since in copy mode the
 *   kernel only transmits inside sendto()). In copy mode one sendto() moves at
 *   most 32 descriptors, so it kicks every loop while the ring needs wakeup.
 *   Pitfall fixed here: xsk_umem__create() leaves the completion ring's
 *   cached_prod/cached_cons as they were in the caller's struct; an
 *   uninitialised struct made the first peek return 4096 bogus completions
 *   before anything was sent (completed > sent). All ring structs are zeroed.
 *
 * rx: one AF_XDP socket with libxdp's default program (xsk_def_xdp_prog: it
 *   redirects the whole queue into the XSKMAP, so it also swallows ARP/ND;
 *   use it only on a dedicated bench link with static neighbours/MACs).
 *   Attached in native (driver) mode: XDP_FLAGS_DRV_MODE is requested so a
 *   silent fallback to generic mode cannot skew numbers.
 *   libxdp's multi-program dispatcher cannot be used here: with a bpffs
 *   mounted, its freplace compatibility check fails with EPERM; under
 *   `ip netns exec` (fresh /sys, no bpffs) it refuses for lack of bpffs.
 *   libxdp 1.3.1 falls back by itself in both cases, but noisily, so rx sets
 *   LIBXDP_SKIP_DISPATCHER=1 (unless already set in the environment): libxdp
 *   then attaches xsk_def_xdp_prog directly over netlink ("legacy" mode,
 *   native/driver attach on veth) and detaches it on xsk_socket__delete().
 *   No bpffs is needed (libxdp takes its lock under /run/xdp). Because
 *   it is a netlink attach (not a bpf_link), a kill -9 leaves the program on
 *   the interface: `ip link set dev IFACE xdp off` (or deleting the veth /
 *   namespace) removes it.
 *   Readiness: the program is on the link (`ip link show IFACE` says "xdp")
 *   just before the socket is registered and the fill ring stocked; give it
 *   ~200 ms after that before starting the sender.
 *   The fill ring (8192 slots, see create_socket) holds all 4096 frames from
 *   the start. The rx ring is busy-polled; poll() (1 ms) is used only after
 *   50 ms of empty spins, i.e. before the sender starts and after it stops.
 *   Sleeping sooner loses frames when anything else wants the CPU: measured
 *   with a compiler running beside it, poll() wake-ups took ~5 ms on average
 *   (the rx task waits for the CPU hog's slice) and 4096 frames of ring
 *   overflowed into rx_fill_ring_empty_descs drops. Stops SECONDS after the
 *   first frame, or 1 s after the last frame, whichever comes first; never
 *   runs longer than SECONDS + 5 s in total.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_link.h>
#include <linux/if_xdp.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#define NUM_FRAMES 4096u
#define FRAME_SZ 4096u
#define BATCH 64u
#define HDR_LEN (14u + 20u + 8u)
#define SEQ_LEN 8u
#define MIN_FRAME (HDR_LEN + SEQ_LEN)
/* rx sleeps in poll() only after this long without a frame (see top). */
#define IDLE_BEFORE_POLL 0.05

static volatile sig_atomic_t g_signal;
static char g_libmsg[512];
static bool g_debug;

static struct xsk_socket *g_xsk;
static struct xsk_umem *g_umem;
static void *g_area;

static void teardown(void)
{
	if (g_xsk) {
		xsk_socket__delete(g_xsk);
		g_xsk = NULL;
	}
	if (g_umem) {
		xsk_umem__delete(g_umem);
		g_umem = NULL;
	}
	if (g_area) {
		munmap(g_area, (size_t)NUM_FRAMES * FRAME_SZ);
		g_area = NULL;
	}
}

static void die(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	char lib[sizeof(g_libmsg)];
	memcpy(lib, g_libmsg, sizeof(lib)); /* before teardown's own chatter */
	teardown();
	if (lib[0] && !g_debug)
		fprintf(stderr, "xdp_loop: %s (last library message: %s)\n", buf, lib);
	else
		fprintf(stderr, "xdp_loop: %s\n", buf);
	exit(1);
}

static void remember(const char *fmt, va_list ap)
{
	if (g_debug) {
		vfprintf(stderr, fmt, ap);
		return;
	}
	vsnprintf(g_libmsg, sizeof(g_libmsg), fmt, ap);
	size_t n = strlen(g_libmsg);
	while (n && (g_libmsg[n - 1] == '\n' || g_libmsg[n - 1] == ' '))
		g_libmsg[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (g_libmsg[i] == '\n')
			g_libmsg[i] = ' ';
}

static int xdp_print(enum libxdp_print_level lvl, const char *fmt, va_list ap)
{
	if (lvl == LIBXDP_DEBUG && !g_debug)
		return 0;
	remember(fmt, ap);
	return 0;
}

static int bpf_print(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	if (lvl == LIBBPF_DEBUG && !g_debug)
		return 0;
	remember(fmt, ap);
	return 0;
}

static void on_signal(int sig)
{
	g_signal = sig;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned long parse_ul(const char *s, const char *what, unsigned long lo, unsigned long hi)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		die("bad %s '%s' (want %lu..%lu)", what, s, lo, hi);
	return v;
}

static void parse_mac(const char *s, uint8_t mac[6], const char *what)
{
	unsigned int b[6];
	char tail;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
		die("bad %s '%s'", what, s);
	for (int i = 0; i < 6; i++) {
		if (b[i] > 0xff)
			die("bad %s '%s'", what, s);
		mac[i] = (uint8_t)b[i];
	}
}

static void parse_ip(const char *s, uint8_t ip[4], const char *what)
{
	if (inet_pton(AF_INET, s, ip) != 1)
		die("bad %s '%s'", what, s);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = __builtin_bswap64(v); /* x86 is little endian; store big endian */
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

static uint16_t ip_csum(const uint8_t *h, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += get16(h + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void build_frame(uint8_t *f, unsigned len, const uint8_t smac[6], const uint8_t dmac[6],
			const uint8_t sip[4], const uint8_t dip[4], uint16_t sport, uint16_t dport)
{
	uint8_t *ip = f + 14, *udp = f + 34;

	memset(f, 0, len);
	memcpy(f, dmac, 6);
	memcpy(f + 6, smac, 6);
	put16(f + 12, 0x0800);
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(len - 14));
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, sip, 4);
	memcpy(ip + 16, dip, 4);
	put16(ip + 10, ip_csum(ip, 20));
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(len - 34));
	put16(udp + 6, 0); /* no UDP checksum */
	for (unsigned i = MIN_FRAME; i < len; i++)
		f[i] = (uint8_t)i;
}

static void setup_common(void)
{
	struct rlimit r = { RLIM_INFINITY, RLIM_INFINITY };
	struct sigaction sa;

	g_debug = getenv("XDP_LOOP_DEBUG") && strcmp(getenv("XDP_LOOP_DEBUG"), "0") != 0;
	libxdp_set_print(xdp_print);
	libbpf_set_print(bpf_print);
	setrlimit(RLIMIT_MEMLOCK, &r); /* root has CAP_IPC_LOCK anyway */

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Create UMEM + socket; tries zero-copy then copy. Returns true for zero-copy. */
static bool create_socket(const char *ifname, unsigned queue, bool is_tx,
			  struct xsk_ring_prod *fill, struct xsk_ring_cons *comp,
			  struct xsk_ring_cons *rx, struct xsk_ring_prod *tx)
{
	static const uint16_t modes[2] = { XDP_ZEROCOPY, XDP_COPY };
	int err = 0;

	for (int m = 0; m < 2; m++) {
		struct xsk_umem_config ucfg = {
			/* rx: twice the frame count. The kernel publishes its fill-ring
			 * consumer index lazily (it takes a batch into a private cache),
			 * so a ring exactly NUM_FRAMES long can look full while the
			 * kernel already holds the entries; with 2x it always fits. */
			.fill_size = is_tx ? 2048 : 2 * NUM_FRAMES,
			.comp_size = is_tx ? NUM_FRAMES : 2048,
			.frame_size = FRAME_SZ,
			.frame_headroom = 0,
			.flags = 0,
		};
		struct xsk_socket_config scfg = {
			.rx_size = NUM_FRAMES,
			.tx_size = 2048,
			.libxdp_flags = is_tx ? XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD : 0,
			.xdp_flags = is_tx ? 0 : XDP_FLAGS_DRV_MODE,
			.bind_flags = (uint16_t)(modes[m] | XDP_USE_NEED_WAKEUP),
		};

		/* libxdp's xsk_umem__create() does not initialise cached_prod/cached_cons
		 * of the completion ring: a ring struct left with stack garbage makes the
		 * first peek return thousands of bogus completions ("completed > sent").
		 * Zero every ring struct before handing it over. */
		memset(fill, 0, sizeof(*fill));
		memset(comp, 0, sizeof(*comp));
		if (rx)
			memset(rx, 0, sizeof(*rx));
		if (tx)
			memset(tx, 0, sizeof(*tx));
		g_area = mmap(NULL, (size_t)NUM_FRAMES * FRAME_SZ, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (g_area == MAP_FAILED) {
			g_area = NULL;
			die("mmap umem: %s", strerror(errno));
		}
		err = xsk_umem__create(&g_umem, g_area, (uint64_t)NUM_FRAMES * FRAME_SZ, fill, comp,
				       &ucfg);
		if (err) {
			g_umem = NULL;
			die("xsk_umem__create: %s", strerror(-err));
		}
		err = xsk_socket__create(&g_xsk, ifname, queue, g_umem, is_tx ? NULL : rx,
					 is_tx ? tx : NULL, &scfg);
		if (!err) {
			g_libmsg[0] = '\0'; /* set-up chatter is not a later error's cause */
			return modes[m] == XDP_ZEROCOPY;
		}
		g_xsk = NULL;
		/* A failed create may already have closed the UMEM fd; start over. */
		teardown();
		if (g_signal)
			break;
	}
	die("xsk_socket__create on %s queue %u (copy mode): %s", ifname, queue, strerror(-err));
	return false;
}

/* XDP_LOOP_DEBUG: the kernel's per-socket drop counters, on stderr. */
static void debug_stats(const char *role)
{
	struct xdp_statistics st;
	socklen_t len = sizeof(st);

	if (!g_debug || !g_xsk)
		return;
	memset(&st, 0, sizeof(st));
	if (getsockopt(xsk_socket__fd(g_xsk), SOL_XDP, XDP_STATISTICS, &st, &len))
		return;
	fprintf(stderr,
		"xdp_loop %s: rx_dropped=%llu rx_invalid_descs=%llu tx_invalid_descs=%llu "
		"rx_ring_full=%llu rx_fill_ring_empty_descs=%llu tx_ring_empty_descs=%llu\n",
		role, (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
		(unsigned long long)st.tx_invalid_descs, (unsigned long long)st.rx_ring_full,
		(unsigned long long)st.rx_fill_ring_empty_descs,
		(unsigned long long)st.tx_ring_empty_descs);
}

static unsigned if_mtu(const char *ifname)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned mtu = 0;

	if (fd < 0)
		return 0;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
		mtu = (unsigned)ifr.ifr_mtu;
	close(fd);
	return mtu;
}

static void kick_tx(struct xsk_socket *xsk)
{
	if (sendto(xsk_socket__fd(xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
		return;
	if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS || errno == EINTR ||
	    errno == ENETDOWN)
		return;
	die("sendto kick: %s", strerror(errno));
}

static int run_tx(int argc, char **argv)
{
	if (argc != 12)
		die("usage: xdp_loop tx IFACE QUEUE FRAME_SIZE SECONDS SRC_MAC DST_MAC SRC_IP DST_IP SRC_PORT DST_PORT");
	const char *ifname = argv[2];
	unsigned queue = (unsigned)parse_ul(argv[3], "QUEUE", 0, 65535);
	unsigned fsize = (unsigned)parse_ul(argv[4], "FRAME_SIZE", MIN_FRAME, FRAME_SZ);
	double seconds = (double)parse_ul(argv[5], "SECONDS", 1, 86400);
	uint8_t smac[6], dmac[6], sip[4], dip[4];
	parse_mac(argv[6], smac, "SRC_MAC");
	parse_mac(argv[7], dmac, "DST_MAC");
	parse_ip(argv[8], sip, "SRC_IP");
	parse_ip(argv[9], dip, "DST_IP");
	uint16_t sport = (uint16_t)parse_ul(argv[10], "SRC_PORT", 1, 65535);
	uint16_t dport = (uint16_t)parse_ul(argv[11], "DST_PORT", 1, 65535);
	if (!if_nametoindex(ifname))
		die("no interface '%s'", ifname);
	/* Oversized frames are dropped by the veth yet still complete: refuse. */
	unsigned mtu = if_mtu(ifname);
	if (mtu && fsize > mtu + 14)
		die("FRAME_SIZE %u exceeds MTU %u + 14 of %s", fsize, mtu, ifname);

	struct xsk_ring_prod fill = { 0 }, tx = { 0 };
	struct xsk_ring_cons comp = { 0 };
	bool zc = create_socket(ifname, queue, true, &fill, &comp, NULL, &tx);
	uint8_t *area = g_area;

	static uint64_t free_stack[NUM_FRAMES];
	static uint8_t in_flight[NUM_FRAMES];
	unsigned nfree = 0;
	for (unsigned i = 0; i < NUM_FRAMES; i++) {
		build_frame(area + (size_t)i * FRAME_SZ, fsize, smac, dmac, sip, dip, sport, dport);
		free_stack[nfree++] = (uint64_t)(NUM_FRAMES - 1 - i) * FRAME_SZ;
	}

	uint64_t sent = 0, completed = 0, outstanding = 0, seq = 0;
	double t0 = now_s(), t_end = t0 + seconds, t_last_comp = t0;
	bool producing = true;
	double drain_end = 0;

	for (;;) {
		/* Reap completions. */
		uint32_t idx;
		uint32_t n = xsk_ring_cons__peek(&comp, NUM_FRAMES, &idx);
		if (n) {
			for (uint32_t i = 0; i < n; i++) {
				uint64_t addr = *xsk_ring_cons__comp_addr(&comp, idx + i);
				uint64_t fi = addr / FRAME_SZ;
				if (addr % FRAME_SZ || fi >= NUM_FRAMES || !in_flight[fi])
					die("completion for frame 0x%" PRIx64 " that is not outstanding",
					    addr);
				in_flight[fi] = 0;
				free_stack[nfree++] = addr;
			}
			xsk_ring_cons__release(&comp, n);
			completed += n;
			outstanding -= n;
			t_last_comp = now_s();
		}
		if (completed > sent || outstanding != sent - completed)
			die("accounting broken: sent %" PRIu64 " completed %" PRIu64
			    " outstanding %" PRIu64, sent, completed, outstanding);

		double t = now_s();
		if (g_signal)
			die("interrupted by signal %d", (int)g_signal);
		if (producing && t >= t_end) {
			producing = false;
			drain_end = t + 0.5;
		}
		if (!producing && (outstanding == 0 || t >= drain_end))
			break;

		if (producing && nfree) {
			uint32_t want = nfree < BATCH ? nfree : BATCH;
			uint32_t space = xsk_prod_nb_free(&tx, want);
			if (space < want) /* ring nearly full: take what fits */
				want = space;
			uint32_t got = want ? xsk_ring_prod__reserve(&tx, want, &idx) : 0;
			for (uint32_t i = 0; i < got; i++) {
				uint64_t addr = free_stack[--nfree];
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx + i);
				put64(area + addr + HDR_LEN, seq++);
				in_flight[addr / FRAME_SZ] = 1;
				d->addr = addr;
				d->len = fsize;
				d->options = 0;
			}
			if (got) {
				xsk_ring_prod__submit(&tx, got);
				sent += got;
				outstanding += got;
			}
		}
		if (outstanding && xsk_ring_prod__needs_wakeup(&tx))
			kick_tx(g_xsk);
	}

	if (completed > sent) /* cannot happen given the bitmap; keep the promise explicit */
		die("completed %" PRIu64 " > sent %" PRIu64, completed, sent);
	if (g_debug)
		fprintf(stderr, "xdp_loop tx: sent=%" PRIu64 " completed=%" PRIu64 "\n", sent,
			completed);
	debug_stats("tx");
	teardown();

	double secs = t_last_comp - t0;
	double pps = secs > 0 ? (double)completed / secs : 0.0;
	printf("{\"role\":\"tx\",\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64
	       ",\"seconds\":%.6f,\"pps\":%.1f,\"mode\":\"%s\"}\n",
	       completed, completed * fsize, secs, pps, zc ? "zerocopy" : "copy");
	fflush(stdout);
	return 0;
}

static int run_rx(int argc, char **argv)
{
	if (argc != 6)
		die("usage: xdp_loop rx IFACE QUEUE SECONDS DST_PORT");
	const char *ifname = argv[2];
	unsigned queue = (unsigned)parse_ul(argv[3], "QUEUE", 0, 65535);
	double seconds = (double)parse_ul(argv[4], "SECONDS", 1, 86400);
	uint16_t dport = (uint16_t)parse_ul(argv[5], "DST_PORT", 1, 65535);
	if (!if_nametoindex(ifname))
		die("no interface '%s'", ifname);

	/* The multiprog dispatcher (freplace) fails with EPERM here. */
	setenv("LIBXDP_SKIP_DISPATCHER", "1", 0);

	struct xsk_ring_prod fill = { 0 };
	struct xsk_ring_cons comp = { 0 }, rx = { 0 };
	double t0 = now_s(), hard_end = t0 + seconds + 5.0;
	create_socket(ifname, queue, false, &fill, &comp, &rx, NULL);
	uint8_t *area = g_area;

	uint32_t idx;
	if (xsk_ring_prod__reserve(&fill, NUM_FRAMES, &idx) != NUM_FRAMES)
		die("could not stock the fill ring");
	for (uint32_t i = 0; i < NUM_FRAMES; i++)
		*xsk_ring_prod__fill_addr(&fill, idx + i) = (uint64_t)i * FRAME_SZ;
	xsk_ring_prod__submit(&fill, NUM_FRAMES);

	uint64_t frames = 0, bytes = 0, gaps = 0, other = 0, expect = 0;
	double t_first = 0, t_last = 0;
	bool any = false;
	unsigned spins = 0;
	double t_busy = now_s();
	struct pollfd pfd = { .fd = xsk_socket__fd(g_xsk), .events = POLLIN };

	for (;;) {
		uint32_t n = xsk_ring_cons__peek(&rx, BATCH, &idx);
		double t = now_s();
		if (n) {
			uint32_t fidx;
			bool ours = false;
			for (uint32_t i = 0; i < n; i++) {
				const struct xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx + i);
				uint64_t addr = xsk_umem__add_offset_to_addr(d->addr);
				const uint8_t *p = area + addr;
				if (d->len >= MIN_FRAME && get16(p + 12) == 0x0800 && (p[14] >> 4) == 4 &&
				    (p[14] & 0xf) == 5 && p[23] == 17 && get16(p + 36) == dport) {
					uint64_t seq = get64(p + HDR_LEN);
					if (frames && seq != expect)
						gaps++;
					expect = seq + 1;
					frames++;
					bytes += d->len;
					ours = true;
				} else {
					other++;
				}
			}
			/* At most NUM_FRAMES entries can look occupied in a ring of
			 * 2 * NUM_FRAMES, so this always fits. */
			if (xsk_ring_prod__reserve(&fill, n, &fidx) != n)
				die("fill ring full (frame accounting broken)");
			for (uint32_t i = 0; i < n; i++) {
				uint64_t a = xsk_ring_cons__rx_desc(&rx, idx + i)->addr;
				*xsk_ring_prod__fill_addr(&fill, fidx + i) =
					xsk_umem__extract_addr(a) & ~(uint64_t)(FRAME_SZ - 1);
			}
			xsk_ring_prod__submit(&fill, n);
			xsk_ring_cons__release(&rx, n);
			if (ours) {
				if (!any) {
					any = true;
					t_first = t;
				}
				t_last = t;
			}
			spins = 0;
			t_busy = t;
		} else if (++spins >= 4096 && t - t_busy >= IDLE_BEFORE_POLL) {
			if (xsk_ring_prod__needs_wakeup(&fill))
				recvfrom(pfd.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (poll(&pfd, 1, 1) < 0 && errno != EINTR)
				die("poll: %s", strerror(errno));
			t = now_s();
		}
		if (g_signal)
			die("interrupted by signal %d", (int)g_signal);
		if (any && (t - t_first >= seconds || t - t_last >= 1.0))
			break;
		if (t >= hard_end)
			break;
	}
	debug_stats("rx");
	teardown();

	double secs = t_last - t_first;
	double pps = secs > 0 ? (double)frames / secs : 0.0;
	printf("{\"role\":\"rx\",\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64
	       ",\"seconds\":%.6f,\"pps\":%.1f,\"gaps\":%" PRIu64 ",\"other\":%" PRIu64 "}\n",
	       frames, bytes, secs, pps, gaps, other);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	setup_common();
	if (argc >= 2 && strcmp(argv[1], "tx") == 0)
		return run_tx(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "rx") == 0)
		return run_rx(argc, argv);
	die("usage: xdp_loop tx IFACE QUEUE FRAME_SIZE SECONDS SRC_MAC DST_MAC SRC_IP DST_IP "
	    "SRC_PORT DST_PORT | xdp_loop rx IFACE QUEUE SECONDS DST_PORT");
	return 1;
}
