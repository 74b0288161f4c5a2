"""bench/gpu: DeepCache end to end on a CUDA GPU, eager, compiled and as CUDA graphs.

    python3 -m bench.gpu                   # CUDA machine: writes bench/results/gpu.json, stops itself at --budget
    python3 -m bench.gpu --budget 540      # more time: compiled SDXL and the CUDA graphs of both models
    python3 -m bench.gpu --budget 540 --compile-branches 0   # compile branch 0 only (one full graph less)
    python3 -m bench.gpu --smoke           # CPU, tiny U-Nets, fp32, compile backend "eager" (the CI check)
    python3 -m bench.gpu --table bench/results/gpu.json   # print the tables of a results file, run nothing

Full-size SD1.5 (512 px: 64x64 latent, context 77x768) and SDXL (1024 px: 128x128 latent, context 77x2048,
y 2816) U-Nets of demo/unet.py with random weights (fan-in scaled, so outputs stay finite), fp16, batch 2
(classifier-free guidance: cond + uncond rows in one call). Each run is a 20-step Euler loop over a Karras
sigma schedule, every U-Net call through core.call_unet with a RunState, as the host adapters do.

Variants, per model and mode:
  baseline      the U-Net's own forward on every step (a RunState at interval 1: PASSTHROUGH calls)
  N=3 b=0 ...   DeepCache: refresh steps run the whole U-Net and store the deep feature (the input of output
                block L-1-b), cached steps run only the shallow branch b on it
  refresh b=0   DeepCache's full forward on every step (all calls FULL): must equal the baseline

Modes:
  eager         plain PyTorch
  compiled      torch.compile (mode default, dynamic=False): the plain forward for the baseline; for DeepCache
                two static graphs per branch, the whole U-Net returning the deep feature and the shallow branch
                consuming it. call_unet's bookkeeping (plain Python, torch.compiler.disable) stays outside them
  graphs        each graph of the compiled mode (of the eager mode with --modes eager graphs) captured once as
                a CUDA graph (torch.cuda.CUDAGraph) and replayed with its inputs copied in

Figures: ms per sampler step (median whole run over the steps, CUDA events), speed-up against the same mode's
baseline and against the eager baseline, the run's FLOP ceiling (core.cost.speedup_from_counts over the run's
full and cached calls with S(b) counted by block_costs on the meta device), efficiency = speed-up / ceiling,
peak memory (torch.cuda.max_memory_allocated, reset before every run), per-call full and cached times
(RunSummary.measured), the first run of every variant (warm-up, compilation or capture included) next to the
later ones, and each graph's compile or capture time apart. Runs are interleaved round by round.

Order and budget: eager SD1.5, eager SDXL, compiled SD1.5 (then its CUDA graphs), compiled SDXL (then its CUDA
graphs); the JSON is rewritten after each of these. Before each step the script estimates what it needs and
skips it (saying why) when --budget would be exceeded; a timer stops it at --budget in any case, keeping what
was measured.
"""
from .cli import main, parse
from .tables import first_deepcache_run, first_run_table, table

__all__ = ["first_deepcache_run", "first_run_table", "main", "parse", "table"]
