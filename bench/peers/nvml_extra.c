/*
 * The tests' fake libnvidia-ml.so.1 (tests/probes/nvml/fake_nvml.c), plus the few read-only
 * queries that CodeCarbon and Zeus make at start-up and that powerd never needs (temperature is
 * the fake's own): memory, utilisation, power limits, compute mode, running processes. They return fixed,
 * plausible values; none of them touches power or energy, which stay the fake's exact waveform.
 *
 * Build (bench/peers.py does it): gcc -O2 -shared -fPIC -Wl,-soname,libnvidia-ml.so.1
 *     -I tests/probes/nvml -o libnvidia-ml.so.1 bench/peers/nvml_extra.c -lm
 */
#include "fake_nvml.c"

typedef struct { unsigned long long total, free, used; } memory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } memory_v2_t;
typedef struct { unsigned int gpu, memory; } utilization_t;

int nvmlDeviceGetMemoryInfo(void *handle, memory_t *m) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    m->total = 80ULL << 30;
    m->used = 1ULL << 30;
    m->free = m->total - m->used;
    return OK;
}

int nvmlDeviceGetMemoryInfo_v2(void *handle, memory_v2_t *m) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    m->total = 80ULL << 30;
    m->reserved = 0;
    m->used = 1ULL << 30;
    m->free = m->total - m->used;
    return OK;
}

int nvmlDeviceGetUtilizationRates(void *handle, utilization_t *u) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    u->gpu = 50;
    u->memory = 10;
    return OK;
}

static int limit_mw(void *handle, unsigned int *mw) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc == OK) *mw = (unsigned)(g->high_w * 1500.0);
    return rc;
}
int nvmlDeviceGetEnforcedPowerLimit(void *handle, unsigned int *mw) { return limit_mw(handle, mw); }
int nvmlDeviceGetPowerManagementLimit(void *handle, unsigned int *mw) { return limit_mw(handle, mw); }
int nvmlDeviceGetPowerManagementDefaultLimit(void *handle, unsigned int *mw) {
    return limit_mw(handle, mw);
}
int nvmlDeviceGetPowerManagementLimitConstraints(void *handle, unsigned int *lo, unsigned int *hi) {
    int rc = limit_mw(handle, hi);
    if (rc == OK) *lo = *hi / 3;
    return rc;
}

int nvmlDeviceGetComputeMode(void *handle, int *mode) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc == OK) *mode = 0;
    return rc;
}

static int no_processes(void *handle, unsigned int *count, void *infos) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    (void)infos;
    if (rc == OK) *count = 0;
    return rc;
}
int nvmlDeviceGetComputeRunningProcesses(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
int nvmlDeviceGetComputeRunningProcesses_v2(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
int nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
int nvmlDeviceGetGraphicsRunningProcesses(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
int nvmlDeviceGetGraphicsRunningProcesses_v2(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
int nvmlDeviceGetGraphicsRunningProcesses_v3(void *h, unsigned int *c, void *i) {
    return no_processes(h, c, i);
}
