/*
 * udp_load: a BEP 15 load generator for the tracker benchmark.
 *
 * Keeps WINDOW transactions in flight on one UDP socket. Each transaction
 * is a connect followed by an announce for a random (torrent, peer) of the
 * benchmark population, exactly as a client does it. Every reply is checked
 * (size, action, transaction id, peer list length); anything else is counted
 * as invalid. Prints one line: BENCH-JSON {...}.
 *
 * usage: udp_load HOST PORT SECONDS HASHES_FILE PEERS_PER_TORRENT WINDOW [fill | rate=N]
 *   HASHES_FILE holds the population's info hashes, 20 bytes each.
 *   With "fill", every (torrent, peer) of the population announces exactly
 *   once, in order (SECONDS is then a time limit), to populate a tracker.
 *   With "rate=N", transactions start on a fixed schedule of N a second
 *   (at most WINDOW in flight) and latency counts from the scheduled start,
 *   so time spent waiting behind a slow reply is measured, not hidden.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define MAX_WINDOW 4096
#define TIMEOUT_US 1000000

enum { IDLE, CONNECTING, ANNOUNCING };

struct slot {
    int state;
    uint32_t tid;
    uint64_t started_us, sent_us;
    long index;  /* fill mode: which (torrent, peer) this slot announces */
};

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

int main(int argc, char **argv) {
    int fill = argc == 8 && strcmp(argv[7], "fill") == 0;
    double rate = argc == 8 && strncmp(argv[7], "rate=", 5) == 0 ? atof(argv[7] + 5) : 0;
    if (argc != 7 && !(argc == 8 && (fill || rate > 0))) {
        fprintf(stderr, "usage: %s HOST PORT SECONDS HASHES_FILE PEERS_PER_TORRENT WINDOW "
                "[fill | rate=N]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *port = argv[2];
    double seconds = atof(argv[3]);
    int peers = atoi(argv[5]), window = atoi(argv[6]);
    if (window < 1 || window > MAX_WINDOW || peers < 1) {
        fprintf(stderr, "bad PEERS_PER_TORRENT or WINDOW\n");
        return 2;
    }

    int torrents;
    unsigned char *hashes = read_hashes(argv[4], &torrents);
    if (!hashes) return 2;
    long population = (long)torrents * peers;

    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) { fprintf(stderr, "bad address\n"); return 2; }
    int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) { perror("socket"); return 2; }
    int peer_width = ai->ai_family == AF_INET6 ? 18 : 6;
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);

    struct slot slots[MAX_WINDOW];
    memset(slots, 0, sizeof slots);
    struct latencies latencies = {0};
    uint64_t announces = 0, errors = 0, invalid = 0, timeouts = 0, peers_returned = 0;
    uint32_t seq = 0;
    unsigned char out[98], in[8192];
    long next_index = 0, retry[MAX_WINDOW], retries = 0;

    uint64_t start = now_us(), end = start + (uint64_t)(seconds * 1e6);
    double next_start = (double)start;  /* rate mode: when the next transaction is due */
    for (;;) {
        uint64_t t = now_us();
        int running = t < end;
        int busy = 0;
        for (int i = 0; i < window; i++) {
            struct slot *s = &slots[i];
            if (s->state != IDLE && t - s->sent_us > TIMEOUT_US) {
                timeouts++;
                s->state = IDLE;
                if (fill && retries < MAX_WINDOW) retry[retries++] = s->index;
            }
            if (s->state == IDLE && running && fill) {
                if (retries) s->index = retry[--retries];
                else if (next_index < population) s->index = next_index++;
                else continue;
            }
            if (s->state == IDLE && running && rate > 0 && next_start > (double)t) continue;
            if (s->state == IDLE && running) {
                uint64_t due = rate > 0 ? (uint64_t)next_start : t;
                s->tid = ((uint32_t)i << 20) | (++seq & 0xFFFFF);
                put64(out, 0x41727101980ull);
                put32(out + 8, 0);
                put32(out + 12, s->tid);
                if (send(fd, out, 16, 0) == 16) {
                    s->state = CONNECTING;
                    s->started_us = due;
                    s->sent_us = t;
                    if (rate > 0) next_start += 1e6 / rate;
                }
            }
            if (s->state != IDLE) busy = 1;
        }
        if (!running && !busy) break;
        if (fill && !busy && next_index >= population && !retries) break;

        struct pollfd p = { fd, POLLIN, 0 };
        struct timespec wait = { 0, 10000000 };
        if (rate > 0) {
            double until = next_start - (double)now_us();
            if (until < 0) until = 0;
            if (until < 1e4) wait.tv_nsec = (long)(until * 1000);
        }
        if (ppoll(&p, 1, &wait, NULL) <= 0) continue;
        for (;;) {
            ssize_t n = recv(fd, in, sizeof in, MSG_DONTWAIT);
            if (n < 0) break;
            if (n < 8) { invalid++; continue; }
            uint32_t action = get32(in), tid = get32(in + 4);
            uint32_t index = tid >> 20;
            struct slot *s = index < (uint32_t)window ? &slots[index] : NULL;
            if (!s || s->state == IDLE || s->tid != tid) { invalid++; continue; }
            t = now_us();
            if (action == 3) {
                errors++;
                fprintf(stderr, "error from tracker: %.*s\n", (int)(n - 8), in + 8);
                s->state = IDLE;
                continue;
            }
            if (s->state == CONNECTING) {
                if (action != 0 || n != 16) { invalid++; s->state = IDLE; continue; }
                int torrent = (int)(rng() % torrents), peer = (int)(rng() % peers);
                if (fill) { torrent = (int)(s->index / peers); peer = (int)(s->index % peers); }
                char peer_id[21];
                snprintf(peer_id, sizeof peer_id, "-BN0001-%012d", peer);
                s->tid = ((uint32_t)index << 20) | (++seq & 0xFFFFF);
                memcpy(out, in + 8, 8);                    /* connection id */
                put32(out + 8, 1);                          /* announce */
                put32(out + 12, s->tid);
                memcpy(out + 16, hashes + 20 * torrent, 20);
                memcpy(out + 36, peer_id, 20);
                put64(out + 56, 0);                         /* downloaded */
                put64(out + 64, peer % 2 == 0 ? 0 : 1000);  /* left: half seed */
                put64(out + 72, 0);                         /* uploaded */
                put32(out + 80, 0);                         /* event */
                put32(out + 84, 0);                         /* ip */
                put32(out + 88, (uint32_t)rng());           /* key */
                put32(out + 92, 50);                        /* num_want */
                uint16_t pp = htons((uint16_t)(10000 + peer));
                memcpy(out + 96, &pp, 2);
                if (send(fd, out, 98, 0) == 98) { s->state = ANNOUNCING; s->sent_us = t; }
                else s->state = IDLE;
            } else {
                if (action != 1 || n < 20 || (n - 20) % peer_width) { invalid++; s->state = IDLE; continue; }
                announces++;
                peers_returned += (uint64_t)(n - 20) / peer_width;
                latency_add(&latencies, t - s->started_us);
                s->state = IDLE;
            }
        }
    }
    uint64_t elapsed = now_us() - start;
    uint32_t p50, p99;
    latency_percentiles(&latencies, &p50, &p99);
    printf("BENCH-JSON {\"requests\": %llu, \"duration_us\": %llu, \"p50_us\": %u, \"p99_us\": %u, "
           "\"errors\": %llu, \"timeouts\": %llu, \"peers_per_reply\": %.1f}\n",
           (unsigned long long)announces, (unsigned long long)elapsed, p50, p99,
           (unsigned long long)(errors + invalid), (unsigned long long)timeouts,
           announces ? (double)peers_returned / announces : 0.0);
    return 0;
}
