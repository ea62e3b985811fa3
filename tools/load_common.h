/*
 * Shared by the benchmark's C load generators (udp_load.c, http_load.c):
 * the clock, the random numbers and the population's info hashes.
 */
#ifndef LOAD_COMMON_H
#define LOAD_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000;
}

/* xorshift64: fast, and the same sequence on every run. */
static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Every request's latency in microseconds, for the median and the 99th percentile. */
struct latencies {
    uint32_t *us;
    size_t n, cap;
};

static void latency_add(struct latencies *l, uint64_t us) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1 << 20;
        l->us = realloc(l->us, l->cap * sizeof *l->us);
    }
    l->us[l->n++] = (uint32_t)us;
}

/* Sorts once, then reads the percentiles off. */
static void latency_percentiles(struct latencies *l, uint32_t *p50, uint32_t *p99) {
    qsort(l->us, l->n, sizeof *l->us, cmp_u32);
    *p50 = l->n ? l->us[l->n / 2] : 0;
    *p99 = l->n ? l->us[(size_t)(l->n * 0.99)] : 0;
}

/* The population's info hashes, 20 bytes each, from PATH; NULL (after a
 * message) if the file cannot be read or holds none. */
static unsigned char *read_hashes(const char *path, int *torrents) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *torrents = (int)(size / 20);
    unsigned char *hashes = malloc(size > 0 ? size : 1);
    if (*torrents < 1 || fread(hashes, 20, *torrents, f) != (size_t)*torrents) {
        fprintf(stderr, "cannot read hashes from %s\n", path);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return hashes;
}

#endif
