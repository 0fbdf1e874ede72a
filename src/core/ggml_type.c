/* Block sizes of ggml's element types (ggml_type.h). */
#include "ggml_type.h"

int xd_ggml_type_block(uint32_t type, size_t *be, size_t *bb) {
    switch (type) {
    case GGML_F32: *be = 1; *bb = 4; return 0;
    case GGML_F16: case GGML_BF16: *be = 1; *bb = 2; return 0;
    case GGML_Q4_0: *be = 32; *bb = 18; return 0;
    case GGML_Q4_1: *be = 32; *bb = 20; return 0;
    case GGML_Q5_0: *be = 32; *bb = 22; return 0;
    case GGML_Q5_1: *be = 32; *bb = 24; return 0;
    case GGML_Q8_0: *be = 32; *bb = 34; return 0;
    case GGML_IQ4_NL: *be = 32; *bb = 18; return 0;
    case GGML_Q2_K: *be = 256; *bb = 84; return 0;
    case GGML_Q3_K: *be = 256; *bb = 110; return 0;
    case GGML_Q4_K: *be = 256; *bb = 144; return 0;
    case GGML_Q5_K: *be = 256; *bb = 176; return 0;
    case GGML_Q6_K: *be = 256; *bb = 210; return 0;
    case GGML_Q8_K: *be = 256; *bb = 292; return 0;
    case GGML_IQ4_XS: *be = 256; *bb = 136; return 0;
    default: *be = *bb = 0; return -1;
    }
}
