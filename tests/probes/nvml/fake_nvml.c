/*
 * A fake libnvidia-ml.so.1 for powerd's tests and benchmarks: just enough of NVML for the real
 * nvidia-ml-py binding, with power that is a known function of time so every joule is checkable.
 *
 * Build: gcc -O2 -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 fake_nvml.c
 * Load:  LD_LIBRARY_PATH=<dir> in a new process (nvidia-ml-py dlopens "libnvidia-ml.so.1").
 *
 * The scenario is read at the first nvmlInit* from the file named by $FAKE_NVML_CONFIG, one
 * "key=value" a line ('#' starts a comment). Global keys:
 *   gpus=N              number of GPUs (at most 16)
 *   driver=550.54.15    what nvmlSystemGetDriverVersion returns
 *   init_error=CODE     make nvmlInit* fail with this nvmlReturn_t (e.g. 9, DRIVER_NOT_LOADED)
 *   energy_update_ms=M  default update period of every energy counter (default 100)
 *   start_ns=T          CLOCK_REALTIME ns at which every energy counter reads 0 (default: init)
 * Per-GPU keys, "gpu<i>.<key>=value":
 *   name, uuid          strings returned by nvmlDeviceGetName / nvmlDeviceGetUUID
 *   arch=volta|turing|ampere|ada|hopper|blackwell|pascal   (pascal: no energy counter)
 *   high_w, low_w, period_ns, high_ns   the square wave of probes/sim/waveform.py: high for the
 *                       first high_ns of each period, phase 0 at the Unix epoch
 *   instant=0|1         field 186 NVML_FI_DEV_POWER_INSTANT supported (default 1)
 *   energy_update_ms=M  this GPU's counter update period
 *   mig=0|1             MIG mode reported by nvmlDeviceGetMigMode (Ampere and later)
 *   reset_at_ns=T       from T the counter counts again from 0 (a driver reload)
 *   lost_at_ns=T        from T every call on this GPU returns NVML_ERROR_GPU_IS_LOST
 *   temp_c=C            nvmlDeviceGetTemperature (GPU sensor) settles at C °C (absent: the call
 *                       returns NOT_SUPPORTED); temp_start_c (default C - 20), temp_tau_ms
 *                       (default 30000) and temp_drift_mc_per_s (m°C/s, default 0): the reading
 *                       at t is C + (start - C) e^(-(t - start_ns)/tau) + drift (t - start_ns),
 *                       whole °C as NVML reports them
 *
 * Semantics: nvmlDeviceGetTotalEnergyConsumption is the exact integral of the wave (mJ, floored)
 * from start_ns (or reset_at_ns) to the last multiple of energy_update_ms since the epoch.
 * nvmlDeviceGetPowerUsage is the instantaneous wave in mW, or on "ampere" the trailing 1 s
 * average on Ampere and later (NVIDIA: except GA100, not modelled). Field 186 is instantaneous.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_GPUS 16
#define OK 0
#define ERR_UNINITIALIZED 1
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_INSUFFICIENT_SIZE 7
#define ERR_GPU_IS_LOST 15
#define ERR_UNKNOWN 999
#define FI_POWER_AVERAGE 185
#define FI_POWER_INSTANT 186
#define VALUE_TYPE_UNSIGNED_INT 1

enum { ARCH_PASCAL = 4, ARCH_VOLTA = 5, ARCH_TURING = 6, ARCH_AMPERE = 7, ARCH_ADA = 8,
       ARCH_HOPPER = 9, ARCH_BLACKWELL = 10 };

typedef struct {
    char name[96];
    char uuid[96];
    unsigned arch;
    double high_w, low_w;
    int64_t period_ns, high_ns;
    int instant, mig;
    int64_t update_ns, reset_at_ns, lost_at_ns;
    int has_temp;
    double temp_c, temp_start_c, temp_tau_ms, temp_drift_mc_per_s;
} gpu_t;

/* nvmlFieldValue_t as in nvml.h (and nvidia-ml-py's c_nvmlFieldValue_t). */
typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    unsigned int valueType;
    unsigned int nvmlReturn;
    union { double d; unsigned int ui; unsigned long ul; unsigned long long ull;
            long long sll; int si; unsigned short us; } value;
} field_value_t;

static gpu_t gpus[MAX_GPUS];
static unsigned n_gpus;
static int initialised;
static int64_t start_ns;
static char driver[64];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double power_w(const gpu_t *g, int64_t t) {
    int64_t r = t % g->period_ns;
    return r < g->high_ns ? g->high_w : g->low_w;
}

/* Energy from the start of a period to r ns into it (J), as Waveform._partial_j. */
static double partial_j(const gpu_t *g, int64_t r) {
    int64_t h = r < g->high_ns ? r : g->high_ns;
    return (g->high_w * (double)h + g->low_w * (double)(r - h)) / 1e9;
}

/* Exact energy over [a, b] (J), as Waveform.energy_j. */
static double energy_j(const gpu_t *g, int64_t a, int64_t b) {
    int64_t ka = a / g->period_ns, kb = b / g->period_ns;
    return (double)(kb - ka) * partial_j(g, g->period_ns) + partial_j(g, b % g->period_ns) -
           partial_j(g, a % g->period_ns);
}

static unsigned parse_arch(const char *s) {
    static const struct { const char *name; unsigned code; } arches[] = {
        {"pascal", ARCH_PASCAL}, {"volta", ARCH_VOLTA}, {"turing", ARCH_TURING},
        {"ampere", ARCH_AMPERE}, {"ada", ARCH_ADA}, {"hopper", ARCH_HOPPER},
        {"blackwell", ARCH_BLACKWELL}};
    for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
        if (strcmp(s, arches[i].name) == 0) return arches[i].code;
    return ARCH_HOPPER;
}

static void set_gpu_key(gpu_t *g, const char *key, const char *val) {
    if (!strcmp(key, "name")) snprintf(g->name, sizeof g->name, "%s", val);
    else if (!strcmp(key, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", val);
    else if (!strcmp(key, "arch")) g->arch = parse_arch(val);
    else if (!strcmp(key, "high_w")) g->high_w = atof(val);
    else if (!strcmp(key, "low_w")) g->low_w = atof(val);
    else if (!strcmp(key, "period_ns")) g->period_ns = atoll(val);
    else if (!strcmp(key, "high_ns")) g->high_ns = atoll(val);
    else if (!strcmp(key, "instant")) g->instant = atoi(val);
    else if (!strcmp(key, "mig")) g->mig = atoi(val);
    else if (!strcmp(key, "energy_update_ms")) g->update_ns = atoll(val) * 1000000LL;
    else if (!strcmp(key, "reset_at_ns")) g->reset_at_ns = atoll(val);
    else if (!strcmp(key, "lost_at_ns")) g->lost_at_ns = atoll(val);
    else if (!strcmp(key, "temp_c")) { g->temp_c = atof(val); g->has_temp = 1; }
    else if (!strcmp(key, "temp_start_c")) g->temp_start_c = atof(val);
    else if (!strcmp(key, "temp_tau_ms")) g->temp_tau_ms = atof(val);
    else if (!strcmp(key, "temp_drift_mc_per_s")) g->temp_drift_mc_per_s = atof(val);
}

/* Read the scenario; returns an nvmlReturn_t (init_error, or UNKNOWN if there is no file). */
static int load_config(void) {
    const char *path = getenv("FAKE_NVML_CONFIG");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return ERR_UNKNOWN;
    int init_error = OK;
    int64_t update_ns = 100000000LL;
    n_gpus = 0;
    start_ns = now_ns();
    snprintf(driver, sizeof driver, "%s", "550.54.15");
    for (unsigned i = 0; i < MAX_GPUS; i++) {
        gpu_t *g = &gpus[i];
        memset(g, 0, sizeof *g);
        snprintf(g->name, sizeof g->name, "Fake GPU %u", i);
        snprintf(g->uuid, sizeof g->uuid, "GPU-fake0000-0000-0000-0000-%012u", i);
        g->arch = ARCH_HOPPER;
        g->high_w = g->low_w = 100.0;
        g->period_ns = g->high_ns = 1000000000LL;
        g->instant = 1;
        g->temp_start_c = NAN;
        g->temp_tau_ms = 30000.0;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq) continue;
        *eq = '\0';
        const char *key = line, *val = eq + 1;
        unsigned idx;
        int used = 0;
        if (sscanf(key, "gpu%u.%n", &idx, &used) == 1 && used > 0 && idx < MAX_GPUS)
            set_gpu_key(&gpus[idx], key + used, val);
        else if (!strcmp(key, "gpus")) n_gpus = (unsigned)atoi(val);
        else if (!strcmp(key, "driver")) snprintf(driver, sizeof driver, "%s", val);
        else if (!strcmp(key, "init_error")) init_error = atoi(val);
        else if (!strcmp(key, "energy_update_ms")) update_ns = atoll(val) * 1000000LL;
        else if (!strcmp(key, "start_ns")) start_ns = atoll(val);
    }
    fclose(f);
    if (n_gpus > MAX_GPUS) n_gpus = MAX_GPUS;
    for (unsigned i = 0; i < MAX_GPUS; i++)
        if (gpus[i].update_ns <= 0) gpus[i].update_ns = update_ns;
    return init_error;
}

/* The GPU behind a handle, or an error code: not initialised, bad handle, or lost. */
static int lookup(const void *handle, gpu_t **out) {
    if (!initialised) return ERR_UNINITIALIZED;
    const gpu_t *g = (const gpu_t *)handle;
    if (g < gpus || g >= gpus + n_gpus) return ERR_INVALID_ARGUMENT;
    if (g->lost_at_ns && now_ns() >= g->lost_at_ns) return ERR_GPU_IS_LOST;
    *out = (gpu_t *)g;
    return OK;
}

static int copy_string(char *buf, unsigned len, const char *s) {
    if (!buf || strlen(s) + 1 > len) return ERR_INSUFFICIENT_SIZE;
    memcpy(buf, s, strlen(s) + 1);
    return OK;
}

/* Init and shutdown are reference-counted, as in NVML; the scenario is read at the first init. */
int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (initialised) {
        initialised++;
        return OK;
    }
    int rc = load_config();
    initialised = rc == OK;
    return rc;
}
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) {
    if (!initialised) return ERR_UNINITIALIZED;
    initialised--;
    return OK;
}

const char *nvmlErrorString(int rc) {
    switch (rc) {
    case OK: return "Success";
    case ERR_UNINITIALIZED: return "Uninitialized";
    case ERR_INVALID_ARGUMENT: return "Invalid Argument";
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *buf, unsigned int len) {
    if (!initialised) return ERR_UNINITIALIZED;
    return copy_string(buf, len, driver);
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return ERR_UNINITIALIZED;
    *count = n_gpus;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    gpu_t *g;
    if (index >= n_gpus) return initialised ? ERR_INVALID_ARGUMENT : ERR_UNINITIALIZED;
    int rc = lookup(&gpus[index], &g);
    if (rc == OK) *handle = g;
    return rc;
}

int nvmlDeviceGetName(void *handle, char *buf, unsigned int len) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    return rc != OK ? rc : copy_string(buf, len, g->name);
}

int nvmlDeviceGetUUID(void *handle, char *buf, unsigned int len) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    return rc != OK ? rc : copy_string(buf, len, g->uuid);
}

int nvmlDeviceGetArchitecture(void *handle, unsigned int *arch) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc == OK) *arch = g->arch;
    return rc;
}

int nvmlDeviceGetMigMode(void *handle, unsigned int *current, unsigned int *pending) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    if (g->arch < ARCH_AMPERE) return ERR_NOT_SUPPORTED;
    *current = *pending = (unsigned)g->mig;
    return OK;
}

int nvmlDeviceIsMigDeviceHandle(void *handle, unsigned int *is_mig) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc == OK) *is_mig = 0;
    return rc;
}

static unsigned average_mw(const gpu_t *g, int64_t t) {
    return (unsigned)(energy_j(g, t - 1000000000LL, t) * 1000.0 + 0.5);
}

int nvmlDeviceGetPowerUsage(void *handle, unsigned int *mw) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    int64_t t = now_ns();
    *mw = g->arch >= ARCH_AMPERE ? average_mw(g, t) : (unsigned)(power_w(g, t) * 1000.0 + 0.5);
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(void *handle, unsigned long long *mj) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    if (g->arch < ARCH_VOLTA) return ERR_NOT_SUPPORTED;
    int64_t t = now_ns();
    int64_t updated = t / g->update_ns * g->update_ns;
    int64_t since = g->reset_at_ns && updated >= g->reset_at_ns ? g->reset_at_ns : start_ns;
    *mj = updated > since ? (unsigned long long)(energy_j(g, since, updated) * 1000.0) : 0ULL;
    return OK;
}

int nvmlDeviceGetFieldValues(void *handle, int count, field_value_t *values) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    if (count < 0 || (count > 0 && !values)) return ERR_INVALID_ARGUMENT;
    int64_t t = now_ns();
    for (int i = 0; i < count; i++) {
        field_value_t *v = &values[i];
        v->timestamp = t / 1000;
        v->latencyUsec = 0;
        v->valueType = VALUE_TYPE_UNSIGNED_INT;
        v->nvmlReturn = OK;
        if (v->fieldId == FI_POWER_INSTANT && g->instant)
            v->value.ui = (unsigned)(power_w(g, t) * 1000.0 + 0.5);
        else if (v->fieldId == FI_POWER_AVERAGE && g->arch >= ARCH_AMPERE)
            v->value.ui = average_mw(g, t);
        else
            v->nvmlReturn = ERR_NOT_SUPPORTED;
    }
    return OK;
}

/* The GPU core sensor (sensorType 0, NVML_TEMPERATURE_GPU), in whole °C. */
int nvmlDeviceGetTemperature(void *handle, int sensor, unsigned int *temp) {
    gpu_t *g;
    int rc = lookup(handle, &g);
    if (rc != OK) return rc;
    if (!temp) return ERR_INVALID_ARGUMENT;
    if (sensor != 0 || !g->has_temp) return ERR_NOT_SUPPORTED;
    double start = isnan(g->temp_start_c) ? g->temp_c - 20.0 : g->temp_start_c;
    double s = (double)(now_ns() - start_ns) / 1e9;
    if (s < 0) s = 0;
    double c = g->temp_c + (start - g->temp_c) * exp(-s * 1000.0 / g->temp_tau_ms) +
               g->temp_drift_mc_per_s / 1000.0 * s;
    *temp = c <= 0 ? 0U : (unsigned)(c + 0.5);
    return OK;
}
