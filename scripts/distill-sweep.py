#!/usr/bin/env python3
"""The distillation / fusion sweep of README's "Distillation and fusion" section.

Writes one recipe per configuration under out/sweep/ (derived from the committed recipes:
same seed, same training, same fine-tune epochs), runs them with BIN (default the release
CLI), JOBS at a time (RAYON_NUM_THREADS=THREADS each), and prints a table from the reports.

    python3 scripts/distill-sweep.py [--bin target/release/burn-compress] [--jobs 1]
        [--threads 2] [--only NAME,NAME]
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

HEAD = 'seed = 1\n\n[model]\narch = "lenet5"\n\n[data]\npath = "data/mnist5k.safetensors"\n\n'
TRAIN = '[[step]]\nkind = "train"\nepochs = 40\nlr = 0.001\n\n'
PRUNE = ('[[step]]\nkind = "prune"\nconfig = "configs/lenet5-taylor.toml"\nschedule = "agp"\n'
         'total_times = 10\ninterval_steps = 30\nepochs = 6\nlr = 0.0005\n\n')
SPEEDUP = '[[step]]\nkind = "speedup"\n\n'
REPORT = '[[step]]\nkind = "report"\n'


def finetune(lr=0.0005, distill=None, epochs=8):
    s = f'[[step]]\nkind = "finetune"\nepochs = {epochs}\nlr = {lr}\n\n'
    return s + (distill or '')


def kd(t, a):
    return f'[step.distill]\nalgorithm = "kd"\nteacher = "dense"\ntemperature = {t}\nalpha = {a}\n\n'


def layerwise(cfg, origin=1.0, t=2.0):
    return (f'[step.distill]\nalgorithm = "dynamic-layerwise"\nteacher = "dense"\n'
            f'config = "{cfg}"\norigin_lambda = {origin}\ntemperature = {t}\n\n')


def fused_prune(epochs, lr, distill, sparsity_cfg="configs/lenet5-taylor.toml"):
    return (f'[[step]]\nkind = "train"\nepochs = {epochs}\nlr = {lr}\n\n'
            f'[step.prune]\nconfig = "{sparsity_cfg}"\nschedule = "agp"\ntotal_times = 10\n'
            f'interval_steps = 30\n\n' + (distill or ''))


def lw_config(path, mse_lambda, kl_lambda, layers=("fc1", "fc2")):
    s = ''
    if mse_lambda:
        s += (f'[[config_list]]\nop_names = {json.dumps(list(layers))}\nlink = "auto"\n'
              f'lambda = {mse_lambda}\napply_method = "mse"\n\n')
    if kl_lambda:
        s += (f'[[config_list]]\nop_names = ["fc3"]\nlink = "auto"\nlambda = {kl_lambda}\n'
              f'apply_method = "kl"\n\n')
    open(path, 'w').write(s)
    return path


def taylor_config(path, ratio):
    open(path, 'w').write('[algorithm]\nname = "taylor"\n\n[[config_list]]\n'
                          'op_types = ["Conv2d", "Linear"]\nexclude_op_names = ["fc3"]\n'
                          f'sparse_ratio = {ratio}\n')
    return path


def fusion(epochs=16, lr=0.0005, distill=None, ratio=None, interval=30, cfg=None):
    if cfg is None:
        cfg = "configs/lenet5-taylor.toml" if ratio is None else taylor_config(
            f'out/sweep/taylor-{ratio}.toml', ratio)
    return (HEAD + TRAIN + f'[[step]]\nkind = "train"\nepochs = {epochs}\nlr = {lr}\n\n'
            f'[step.prune]\nconfig = "{cfg}"\nschedule = "agp"\ntotal_times = 10\n'
            f'interval_steps = {interval}\n\n[step.quantize]\nconfig = "configs/lenet5-qat-int8.toml"\n\n'
            + (distill or '') + SPEEDUP +
            '[[step]]\nkind = "quantize"\nconfig = "configs/lenet5-ptq-int8.toml"\ncalib = 8\n\n' + REPORT)


def variants():
    os.makedirs('out/sweep', exist_ok=True)
    lw11 = lw_config('out/sweep/lw-mse1-kl1.toml', 1.0, 1.0)
    lw01 = lw_config('out/sweep/lw-mse0.1-kl1.toml', 0.1, 1.0)
    lw10 = lw_config('out/sweep/lw-mse1.toml', 1.0, 0)
    v = {}
    # KD recipe candidates: 8 fine-tune epochs everywhere (as the baseline).
    v['base'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune() + REPORT
    v['kd-T4-a0.3'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(distill=kd(4.0, 0.3)) + REPORT
    v['kd-T2-a0.5'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(distill=kd(2.0, 0.5)) + REPORT
    v['kd-T4-a0'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(distill=kd(4.0, 0.0)) + REPORT
    v['kd-T8-a0.1'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(distill=kd(8.0, 0.1)) + REPORT
    v['base-lr1e-3'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(lr=0.001) + REPORT
    v['kd-T4-a0.3-lr1e-3'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(0.001, kd(4.0, 0.3)) + REPORT
    v['kd-T2-a0.5-lr1e-3'] = HEAD + TRAIN + PRUNE + SPEEDUP + finetune(0.001, kd(2.0, 0.5)) + REPORT
    # Fine-tune on the soft-masked model (before speedup): layerwise links have equal shapes.
    v['masked-base'] = HEAD + TRAIN + PRUNE + finetune() + SPEEDUP + REPORT
    v['masked-kd-T4-a0.3'] = HEAD + TRAIN + PRUNE + finetune(distill=kd(4.0, 0.3)) + SPEEDUP + REPORT
    v['masked-lw-mse1-kl1'] = HEAD + TRAIN + PRUNE + finetune(distill=layerwise(lw11)) + SPEEDUP + REPORT
    v['masked-lw-mse0.1-kl1'] = HEAD + TRAIN + PRUNE + finetune(distill=layerwise(lw01)) + SPEEDUP + REPORT
    v['masked-lw-mse1'] = HEAD + TRAIN + PRUNE + finetune(distill=layerwise(lw10)) + SPEEDUP + REPORT
    v['masked-lw-mse1-kl1-T4'] = HEAD + TRAIN + PRUNE + finetune(distill=layerwise(lw11, t=4.0)) + SPEEDUP + REPORT
    v['masked-lw-mse1-kl1-lr1e-3'] = HEAD + TRAIN + PRUNE + finetune(0.001, layerwise(lw11)) + SPEEDUP + REPORT
    # Distillation during the AGP phase too (the prune step as a training step with a prune block).
    v['agp-kd+kd'] = (HEAD + TRAIN + fused_prune(6, 0.0005, kd(4.0, 0.3)) + SPEEDUP
                      + finetune(distill=kd(4.0, 0.3)) + REPORT)
    v['agp-lw+masked-lw'] = (HEAD + TRAIN + fused_prune(6, 0.0005, layerwise(lw11))
                             + finetune(distill=layerwise(lw11)) + SPEEDUP + REPORT)
    # Fusion candidates.
    v['fusion-16ep-r0.7'] = fusion()
    v['fusion-16ep-r0.65'] = fusion(ratio=0.65)
    v['fusion-16ep-r0.65-lw'] = fusion(ratio=0.65, distill=layerwise(lw11))
    v['fusion-24ep-r0.65'] = fusion(24, ratio=0.65, distill=kd(4.0, 0.3))
    v['fusion-24ep-r0.65-lr1e-3'] = fusion(24, 0.001, ratio=0.65, distill=kd(4.0, 0.3))
    v['fusion-24ep-r0.65-lw'] = fusion(24, ratio=0.65, distill=layerwise(lw11))
    v['fusion-24ep-r0.7-lw'] = fusion(24, distill=layerwise(lw11))
    v['fusion-32ep-r0.65'] = fusion(32, ratio=0.65, distill=kd(4.0, 0.3))
    v['fusion-32ep-r0.65-lw'] = fusion(32, ratio=0.65, distill=layerwise(lw11))
    # fix the default distill for the 16-epoch fusion candidates
    v['fusion-16ep-r0.7'] = fusion(distill=kd(4.0, 0.3))
    v['fusion-16ep-r0.65'] = fusion(ratio=0.65, distill=kd(4.0, 0.3))
    mixed = "configs/lenet5-taylor-fusion.toml"
    v['fusion-24ep-mixed-kd'] = fusion(24, distill=kd(4.0, 0.3), cfg=mixed)
    v['fusion-24ep-mixed-lw'] = fusion(24, distill=layerwise(lw11), cfg=mixed)
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bin', default='target/release/burn-compress')
    ap.add_argument('--jobs', type=int, default=1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--only', default='')
    ap.add_argument('--out', default='out/sweep')
    args = ap.parse_args()
    v = variants()
    names = [n for n in v if not args.only or n in args.only.split(',')]
    names.sort(key=lambda n: not n.startswith('fusion'))  # the longest first
    os.makedirs(args.out, exist_ok=True)

    def run(name):
        recipe = f'out/sweep/{name}.toml'
        open(recipe, 'w').write(v[name])
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        t0 = time.time()
        p = subprocess.run([args.bin, 'run', recipe, '--report', f'{args.out}/{name}.json'],
                           env=env, capture_output=True, text=True)
        dt = time.time() - t0
        open(f'{args.out}/{name}.log', 'w').write(p.stdout + p.stderr)
        if p.returncode != 0:
            return name, None, dt, (p.stderr or p.stdout)[-400:]
        return name, json.load(open(f'{args.out}/{name}.json')), dt, ''

    with ThreadPoolExecutor(args.jobs) as ex:
        for name, rep, dt, e in ex.map(run, names):
            if rep is None:
                print(f'| {name} | FAILED | {e!r} |', flush=True)
                continue
            st = rep['stages']
            dense = st[0]
            last = st[-1]
            print(f"| {name} | {dense['accuracy']*100:.2f}% | {last['accuracy']*100:.2f}% | "
                  f"{dense['macs']/last['macs']:.2f}x | {last['params']} | "
                  f"{' / '.join(s['name'] + ' ' + format(s['accuracy']*100, '.2f') for s in st[1:])} | "
                  f"{dt:.0f} s |", flush=True)


if __name__ == '__main__':
    main()
