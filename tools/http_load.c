/*
 * http_load: a paced HTTP announce load for the tracker benchmark.
 *
 * wrk sends as fast as replies come back, so it measures the maximum rate
 * but not the latency at a given rate. This program starts announces on a
 * fixed schedule (RATE a second) over CONNECTIONS keep-alive connections,
 * one request in flight on each, and counts each request's latency from the
 * time it was due, so a request that waits for a free connection is counted
 * as late (no coordinated omission). A server that closes the connection
 * after a reply (opentracker does, without saying so) is reconnected to, and
 * a request that met such a closed connection before any reply byte is sent
 * again on a new one, as browsers do; both count in that request's time. Every reply is checked: status 200, a complete
 * Content-Length body that is a bencoded dictionary.
 * Prints one line: BENCH-JSON {...}.
 *
 * usage: http_load HOST PORT SECONDS HASHES_FILE PEERS_PER_TORRENT CONNECTIONS RATE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "load_common.h"

#define MAX_CONNECTIONS 1024
#define BUF 65536

struct conn {
    int fd;
    int busy;
    uint64_t due_us;
    size_t have;
    int request_len;
    int retried;
    char request[512];
    char buf[BUF];
};

static struct sockaddr_in server;
static int epfd;

static int open_connection(struct conn *c, int index) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&server, sizeof server) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)index };
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->have = 0;
    return 0;
}

static void reopen(struct conn *c, int index) {
    if (c->fd >= 0) close(c->fd);  /* closing also removes it from epoll */
    c->fd = -1;
    open_connection(c, index);
}

/* 1: a whole reply is in the buffer (its size in *used), 0: not yet, -1: malformed. */
static int parse_reply(struct conn *c, size_t *used, int *status, int *closing) {
    c->buf[c->have < BUF ? c->have : BUF - 1] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return c->have >= BUF - 1 ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (!cl || cl > end) return -1;
    long length = atol(cl + 17);
    if (length < 0 || head + (size_t)length > BUF) return -1;
    if (c->have < head + (size_t)length) return 0;
    /* HTTP/1.0 closes unless it says keep-alive; HTTP/1.1 stays open unless it says close. */
    char *close_hdr = strcasestr(c->buf, "\r\nconnection: close");
    char *keep_hdr = strcasestr(c->buf, "\r\nconnection: keep-alive");
    if (strncmp(c->buf, "HTTP/1.0", 8) == 0) *closing = !(keep_hdr && keep_hdr < end);
    else *closing = close_hdr && close_hdr < end;
    if (length < 2 || c->buf[head] != 'd' || c->buf[head + length - 1] != 'e') *status = -1;
    *used = head + (size_t)length;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT SECONDS HASHES_FILE PEERS_PER_TORRENT CONNECTIONS RATE\n",
                argv[0]);
        return 2;
    }
    double seconds = atof(argv[3]), rate = atof(argv[7]);
    int peers = atoi(argv[5]), connections = atoi(argv[6]);
    if (peers < 1 || connections < 1 || connections > MAX_CONNECTIONS || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "bad PEERS_PER_TORRENT, CONNECTIONS, RATE or SECONDS\n");
        return 2;
    }
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }
    int torrents;
    unsigned char *hashes = read_hashes(argv[4], &torrents);
    if (!hashes) return 2;

    epfd = epoll_create1(0);
    static struct conn conns[MAX_CONNECTIONS];
    for (int i = 0; i < connections; i++) {
        conns[i].fd = -1;
        if (open_connection(&conns[i], i) != 0) { perror("connect"); return 2; }
    }
    struct latencies latencies = {0};
    uint64_t errors = 0, non2xx = 0, reconnects = 0;
    uint64_t start = now_us(), end = start + (uint64_t)(seconds * 1e6);
    double next_start = (double)start;
    int busy = 0;

    for (;;) {
        uint64_t t = now_us();
        int running = t < end;
        /* Start every request that is due, while a connection is free. */
        while (running && next_start <= (double)t && busy < connections) {
            int i;
            for (i = 0; i < connections && (conns[i].busy || conns[i].fd < 0); i++) {}
            if (i == connections) {
                for (i = 0; i < connections && conns[i].busy; i++) {}
                reopen(&conns[i], i);
                reconnects++;
                if (conns[i].fd < 0) { errors++; break; }
            }
            struct conn *c = &conns[i];
            int torrent = (int)(rng() % torrents), peer = (int)(rng() % peers);
            char hash[61];
            for (int k = 0; k < 20; k++) sprintf(hash + 3 * k, "%%%02X", hashes[20 * torrent + k]);
            char *request = c->request;
            int n = snprintf(request, sizeof c->request,
                             "GET /announce?info_hash=%s&peer_id=-BN0001-%012d&port=%d&uploaded=0"
                             "&downloaded=0&left=%d&compact=1&numwant=50 HTTP/1.1\r\n"
                             "Host: %s\r\n\r\n", hash, peer, 10000 + peer,
                             peer % 2 == 0 ? 0 : 1000, argv[1]);
            c->request_len = n;
            c->retried = 0;
            if (write(c->fd, request, (size_t)n) != n) {
                errors++;
                reopen(c, i);
                reconnects++;
                continue;
            }
            c->busy = 1;
            c->due_us = (uint64_t)next_start;
            c->have = 0;
            busy++;
            next_start += 1e6 / rate;
        }
        if (!running && !busy) break;
        if (!running && t > end + 5000000) { errors += busy; break; }  /* replies that never came */

        int wait_ms = 10;
        if (running) {
            double until = (next_start - (double)now_us()) / 1000.0;
            wait_ms = until <= 0 ? 0 : until < 10 ? (int)until : 10;
        }
        struct epoll_event events[64];
        int ready = epoll_wait(epfd, events, 64, wait_ms);
        for (int e = 0; e < ready; e++) {
            int i = (int)events[e].data.u32;
            struct conn *c = &conns[i];
            ssize_t n = read(c->fd, c->buf + c->have, BUF - 1 - c->have);
            if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (c->busy && c->have == 0 && !c->retried) {
                    c->retried = 1;
                    /* Closed before answering: the server had closed this idle connection. */
                    reopen(c, i);
                    reconnects++;
                    if (c->fd >= 0 && write(c->fd, c->request, (size_t)c->request_len) == c->request_len)
                        continue;
                }
                if (c->busy) { errors++; c->busy = 0; busy--; }
                reopen(c, i);  /* the server closed: connect again for the next request */
                reconnects++;
                continue;
            }
            c->have += (size_t)n;
            size_t used;
            int status = 0, closing = 0;
            int parsed = parse_reply(c, &used, &status, &closing);
            if (parsed == 0) continue;
            if (!c->busy) { errors++; reopen(c, i); continue; }
            c->busy = 0;
            busy--;
            if (parsed < 0 || status < 0) {
                errors++;
                reopen(c, i);
                continue;
            }
            if (status != 200) non2xx++;
            latency_add(&latencies, now_us() - c->due_us);
            c->have = 0;
            if (closing) { reopen(c, i); reconnects++; }
        }
    }
    uint64_t elapsed = now_us() - start;
    uint32_t p50, p99;
    latency_percentiles(&latencies, &p50, &p99);
    printf("BENCH-JSON {\"requests\": %zu, \"duration_us\": %llu, \"p50_us\": %u, \"p99_us\": %u, "
           "\"errors\": %llu, \"non2xx\": %llu, \"reconnects\": %llu}\n",
           latencies.n, (unsigned long long)elapsed, p50, p99, (unsigned long long)errors,
           (unsigned long long)non2xx, (unsigned long long)reconnects);
    return 0;
}
