"""The decoding state of a student at a length, from its config.json, in bytes: the
formula of xd_student_state_bytes (src/model/student.c; docs/design.md, "Decoding
state"), for the bench scripts that report it without loading the model."""


def kv_row_bytes(dtype, hd):
    """Bytes of one stored key or value row of a global KV head (xd_kv_row_bytes)."""
    if dtype == "bfloat16":
        return 2 * hd
    if dtype == "int8":  # hd int8 values and an fp16 scale per 32
        return hd + 2 * ((hd + 31) // 32)
    if dtype == "int4":  # per block of 32: an fp16 scale and 16 bytes of 4-bit codes
        return 18 * ((hd + 31) // 32)
    return 4 * hd


def kv_pair_row_bytes(dtype, hd):
    """A key row and a value row (k8v4: int8 keys, int4 values)."""
    if dtype == "k8v4":
        return kv_row_bytes("int8", hd) + kv_row_bytes("int4", hd)
    return 2 * kv_row_bytes(dtype, hd)


def state_bytes(cfg, n_tokens):
    """(global KV pairs, bytes): sinks, the sparse cache's rows and scores, the 2W window
    buffers, every head's mLSTM C, n, m (fp32), and a key and a value row per token and
    global (layer, KV head) pair."""
    L, nh, nkv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    S, W, kvd, dphi = cfg["sinks"], cfg["window"], nkv * hd, 2 * hd
    pairs = {(l, h // (nh // nkv)) for l, h in cfg.get("global_heads", [])}
    SC = cfg.get("sparse_cache", 0)
    base = 4 * L * (2 * (S + SC) * kvd + SC + 4 * W * kvd + nh * dphi * hd + nh * dphi + nh)
    rb = kv_pair_row_bytes(cfg.get("global_kv_dtype", "float32"), hd)
    return len(pairs), base + len(pairs) * rb * n_tokens


def teacher_kv_bytes(cfg, n_tokens):
    """The teacher's fp32 KV cache at n_tokens."""
    nh = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    return 4 * 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * hd * n_tokens
