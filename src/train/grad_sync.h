/* The gradient reduction of a step over MPI ranks (core/dist.h), overlapped with the
 * backward: as the backward finishes a layer (on the step's last micro-batch), that
 * layer's trainable gradients are handed to a communication thread, which sums them
 * across the ranks while the main thread computes the layers below. What is not a layer's
 * (embeddings, final norm, LM head) and whatever no hook announced goes at the end.
 *
 * Each element is summed in rank order whatever the grouping, so the result is bit for bit
 * the unoverlapped one (xd_dist_sum_f32 over the same elements). The thread makes the only
 * MPI calls between xd_grad_sync_layer and xd_grad_sync_finish (MPI_THREAD_SERIALIZED);
 * every rank hands the same runs in the same order, so their collectives match. Without a
 * thread (overlap off, or an MPI library that allows calls from the main thread only),
 * xd_grad_sync_finish sums every run itself, after the backward. */
#ifndef XD_GRAD_SYNC_H
#define XD_GRAD_SYNC_H

#include "train.h"

typedef struct xd_grad_sync xd_grad_sync;

/* The runs of g's trainable tensors, by layer ("layers.N." in the name; -1: none), in
 * grad (the arena laid out as param). threaded: start the communication thread. NULL with
 * the error. */
xd_grad_sync *xd_grad_sync_new(const xd_param_groups *g, const float *param, float *grad,
                               int n_layer, int threaded);
/* 1 when the reduction overlaps the backward (a thread runs it). */
int xd_grad_sync_threaded(const xd_grad_sync *s);
/* Layer l's gradients are final: start summing them (threaded; otherwise nothing). */
void xd_grad_sync_layer(xd_grad_sync *s, int layer);
/* Sums what is left and waits until every run is summed; ready for the next step. */
int xd_grad_sync_finish(xd_grad_sync *s);
void xd_grad_sync_free(xd_grad_sync *s);

#endif
