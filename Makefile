# xdistill — the README's two commands: `make demo` and `make test`.
# Both install what is missing (Debian packages, the teacher model) first.
MODELS  ?= $(HOME)/.cache/xdistill/models
TEACHER ?= $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
JOBS    ?= $(shell nproc)
BUILD   ?= build
ASAN    ?= build-asan

.PHONY: all deps teacher build asan test test-unit test-asan demo bench bench-train bench-student bench-distill bench-stage3 bench-longctx bench-lora-cost bench-lora bench-debias bench-mpi clean

all: build

deps:
	@scripts/install-deps.sh

teacher: deps
	@XD_MODELS=$(MODELS) scripts/fetch-teacher.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DXD_SANITIZE=ON -DXD_NATIVE=ON >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)

# Unit tests, then the sanitizer build on the tests that use no full model.
test: build teacher asan
	@cd $(BUILD) && XD_TEACHER=$(TEACHER) ctest --output-on-failure
	@cd $(ASAN) && XD_TEACHER=$(TEACHER) ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -E teacher

# The whole pipeline on SmolLM2 with small budgets (20–40 minutes on 2 cores):
# tasks → convert → Stage I → teacher logits → Stage II → eval → compare → report.
demo: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) scripts/demo.sh

# Teacher inference vs llama.cpp and sgemm vs BLAS peak, then at 16K the teacher and a
# quantised student vs llama.cpp (bench/run_long.sh; LONG=0 skips it); writes bench/RESULTS.md.
bench: teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/run_infer.sh

# Training tokens/s (forward + backward + AdamW) vs PyTorch CPU; writes bench/RESULTS.md.
bench-train: teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/run_train.sh

# Student decoding: constant memory, tokens/s at 16K context vs the teacher; writes bench/RESULTS.md.
bench-student: teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/run_student.sh

# SmolLM2 → student on the KJV: Stage I per-layer table, Stage II, passkey; writes bench/RESULTS.md.
bench-distill: teacher
	@XD_TEACHER=$(TEACHER) bench/distill_smollm2.sh

# Long context (issue 13): the demo's pipeline at 40 examples per task and the passkey curve
# at 1–32 windows for teacher, student and SWA-only (about an hour, estimated); writes bench/RESULTS.md.
bench-longctx: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/longctx.sh

# LoRA cost: EVA initialisation vs HF PEFT's (needs tests/ref/setup.sh), LoRA vs full
# fine-tuning peak RSS and tokens/s; writes bench/RESULTS.md.
bench-lora-cost: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/lora_cost.sh

# Does EVA help? EVA / random / PiSSA LoRA vs full fine-tuning on two tasks, 3 seeds;
# writes bench/RESULTS.md and bench/lora_loss_curves.svg.
bench-lora: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/lora_quality.sh

# Modular DiffPruning debiasing: task diff, attribute diffs stacked on demand, full
# fine-tuning with and without an adversary (SmolLM2-135M, generated biographies, per seed);
# writes bench/debias_results/ and bench/RESULTS.md.
bench-debias: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/debias.sh

# Stage III: three domain experts merged vs a generalist on the same tokens; writes bench/RESULTS.md.
bench-stage3: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/stage3_smollm2.sh

# Data parallelism (issue 16): 1 rank x 2 threads vs 2 ranks x 1 thread on SmolLM2, the
# all-reduce's share of the step, PyTorch DDP (gloo) side by side; writes bench/RESULTS.md.
bench-mpi: build teacher
	@BUILD=$(BUILD) XD_TEACHER=$(TEACHER) bench/mpi.sh

clean:
	rm -rf $(BUILD) $(ASAN)
