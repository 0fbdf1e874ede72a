/* Overlapped gradient reduction (grad_sync.h). */
#include "grad_sync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/error.h"

typedef struct {
    size_t off, n;
    int layer;
} run;

struct xd_grad_sync {
    float *grad;
    run *runs;
    int n_runs, n_layer;
    unsigned char *sent;  /* [n_layer + 1]: slot n_layer is "no layer" */
    int *queue, head, tail; /* run indices, FIFO (each run at most once a step) */
    int threaded, busy, quit, failed;
    char err[1024];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t more, done;
};

static void *worker(void *arg) {
    xd_grad_sync *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == s->tail && !s->quit) pthread_cond_wait(&s->more, &s->mu);
        if (s->head == s->tail && s->quit) break;
        run r = s->runs[s->queue[s->head++]];
        s->busy = 1;
        int skip = s->failed;
        pthread_mutex_unlock(&s->mu);
        int rc = skip ? 0 : xd_dist_sum_f32(s->grad + r.off, r.n);
        pthread_mutex_lock(&s->mu);
        if (rc && !s->failed) {
            s->failed = 1;
            snprintf(s->err, sizeof s->err, "%s", xd_last_error());
        }
        s->busy = 0;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The layer of an HF-style name: N of "layers.N.", else -1. */
static int layer_of(const char *name, int n_layer) {
    const char *p = strstr(name, "layers.");
    if (!p) return -1;
    int l = atoi(p + 7);
    return l >= 0 && l < n_layer ? l : -1;
}

static int by_offset(const void *a, const void *b) {
    const run *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

xd_grad_sync *xd_grad_sync_new(const xd_param_groups *g, const float *param, float *grad,
                               int n_layer, int threaded) {
    xd_grad_sync *s = calloc(1, sizeof *s);
    if (!s) { xd_err("out of memory"); return NULL; }
    s->grad = grad;
    s->n_layer = n_layer;
    s->threaded = threaded;
    s->runs = calloc((size_t)g->n + 1, sizeof *s->runs);
    s->queue = calloc((size_t)g->n + 1, sizeof *s->queue);
    s->sent = calloc((size_t)n_layer + 1, 1);
    if (!s->runs || !s->queue || !s->sent) {
        xd_grad_sync_free(s);
        xd_err("out of memory");
        return NULL;
    }
    /* the trainable tensors by offset; neighbours of one layer merge into one run */
    int n = 0;
    for (int i = 0; i < g->n; i++)
        if (g->train[i])
            s->runs[n++] = (run){(size_t)(g->w[i].ptr - param), (size_t)(g->w[i].rows * g->w[i].cols),
                                 layer_of(g->w[i].hf, n_layer)};
    qsort(s->runs, (size_t)n, sizeof *s->runs, by_offset);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && s->runs[m - 1].layer == s->runs[i].layer &&
            s->runs[m - 1].off + s->runs[m - 1].n == s->runs[i].off)
            s->runs[m - 1].n += s->runs[i].n;
        else s->runs[m++] = s->runs[i];
    }
    s->n_runs = m;
    if (!threaded) return s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->done, NULL);
    if (pthread_create(&s->th, NULL, worker, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->more);
        pthread_cond_destroy(&s->done);
        free(s->runs), free(s->queue), free(s->sent), free(s);
        xd_err("cannot start the gradient reduction thread");
        return NULL;
    }
    return s;
}

/* Queues the runs of layer l (−1: those of no layer) unless already sent (mu held). */
static void send_layer(xd_grad_sync *s, int l) {
    int slot = l < 0 ? s->n_layer : l;
    if (s->sent[slot]) return;
    s->sent[slot] = 1;
    for (int i = 0; i < s->n_runs; i++)
        if (s->runs[i].layer == l) s->queue[s->tail++] = i;
    pthread_cond_signal(&s->more);
}

int xd_grad_sync_threaded(const xd_grad_sync *s) { return s->threaded; }

void xd_grad_sync_layer(xd_grad_sync *s, int layer) {
    if (!s->threaded || layer < 0 || layer >= s->n_layer) return;
    pthread_mutex_lock(&s->mu);
    send_layer(s, layer);
    pthread_mutex_unlock(&s->mu);
}

int xd_grad_sync_finish(xd_grad_sync *s) {
    if (!s->threaded) {
        for (int i = 0; i < s->n_runs; i++)
            if (xd_dist_sum_f32(s->grad + s->runs[i].off, s->runs[i].n)) return -1;
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    /* in the order a backward announces them: the last layer first, then no layer */
    for (int l = s->n_layer - 1; l >= -1; l--) send_layer(s, l);
    while (s->head != s->tail || s->busy) pthread_cond_wait(&s->done, &s->mu);
    int failed = s->failed;
    char err[sizeof s->err];
    memcpy(err, s->err, sizeof err);
    s->head = s->tail = 0;
    s->failed = 0;
    memset(s->sent, 0, (size_t)s->n_layer + 1);
    pthread_mutex_unlock(&s->mu);
    return failed ? xd_err("%s", err) : 0;
}

void xd_grad_sync_free(xd_grad_sync *s) {
    if (!s) return;
    if (s->threaded && s->runs && s->queue && s->sent) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->more);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->more);
        pthread_cond_destroy(&s->done);
    }
    free(s->runs);
    free(s->queue);
    free(s->sent);
    free(s);
}
