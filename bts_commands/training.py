"""The framework-neutral parts of a training command: checks before a run, the epochs loop, its bookkeeping
(progress bar, loss log, checkpoint cadence) and the summary line it ends with. Each framework's train.py
supplies `fit(config)`, which builds its model and optimizer and hands the rest to `train_run`, and
calls `run_training`.
"""
import csv
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bts_core.cli import InputError, run_command
from bts_core.config import MIN_GT_DEPTH, ConfigError, end_learning_rate, load_config, parse_args
from bts_core.malloc import keep_freed_memory
from bts_data.dataset import BtsSamples, batch_indices
from bts_data.synthetic import write_tree


def run_training(fit, argv, description, checkpoint_name):
    """`fit(config)` behind the command line: user errors become one stderr line and exit code 2; an
    earlier run's checkpoints (`checkpoint_name`, e.g. "model-{step}") are kept unless --force; a
    finished run ends with one summary line on stdout, terminal or not."""
    def train(args):
        config = load_config(args.config, args.opt)
        refuse_existing_checkpoints(run_folder(config), checkpoint_name, args.force)
        keep_freed_memory()     # each step's activations would be mapped afresh (bts_core.malloc)
        summary = fit(config)
        if summary["loss_log"] is not None:   # the lead process (rank 0) speaks for a distributed run
            print(summary_line(summary), flush=True)
    return run_command(train, parse_args(argv, description), more_bad_input=(ConfigError,))


def _listed(names, most=3):
    return ", ".join(names) if len(names) <= most else f"{names[0]}, ..., {names[-1]} ({len(names)} in all)"


def _step_order(name):
    digits = re.search(r"\d+", name)
    return (int(digits.group()) if digits else -1, name)


def refuse_existing_checkpoints(folder, checkpoint_name, force):
    """An InputError (exit 2) naming `folder` if it holds checkpoints named like `checkpoint_name`
    ("model-{step}") and not `force`; checked before anything is written."""
    pattern = re.compile(re.escape(checkpoint_name).replace(re.escape("{step}"), r"\d+"))
    found = sorted((p.name for p in Path(folder).iterdir() if pattern.fullmatch(p.name)), key=_step_order) \
        if Path(folder).is_dir() else []
    if found and not force:
        raise InputError(f"{folder} already holds checkpoints of an earlier run ({_listed(found)}); "
                         f"pass --force to overwrite them, or choose another log_directory or model_name")


# ---- Pieces of a run that do not depend on the framework ---------------------------------------

def run_folder(config):
    return Path(config["log_directory"]) / config["model_name"]


class LossLog:
    """loss_log.csv, one row per step (step, epoch, lr, loss, time), flushed as it goes so a crashed run
    keeps its history; a new run in the same folder starts the file afresh."""
    COLUMNS = ("step", "epoch", "lr", "loss", "time")

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)

    def write(self, record):
        self._writer.writerow([repr(record[c]) if isinstance(record[c], float) else record[c] for c in self.COLUMNS])
        self._file.flush()

    def close(self):
        self._file.close()


def schedule_length(config, n_samples):
    """(steps per epoch, total steps) of a run over `n_samples`; a batch larger than the data is an error."""
    per_epoch = len(batch_indices(n_samples, config["batch_size"], config["seed"], epoch=0))
    if per_epoch == 0:
        raise ConfigError(f"batch_size {config['batch_size']} exceeds the {n_samples} training samples")
    return per_epoch, config["num_epochs"] * per_epoch


@dataclass(frozen=True)
class Start:
    """Where a run starts: its global step, the epoch that falls in, and that epoch's batches already done."""
    global_step: int = 0
    epoch: int = 0
    skip_batches: int = 0

    def batches_done(self, epoch):
        """How many of `epoch`'s first batches the run did before it stopped (its loader leaves them out)."""
        return self.skip_batches if epoch == self.epoch else 0


def resume_at(config, saved_step, optimizer_restored, source, per_epoch, total):
    """The Start of a run from a saved state (official semantics: global step and LR position restored;
    `retrain: true` restarts at step 0 with the loaded weights and optimizer). The loaders are seeded per
    epoch, so skipping the batches already done continues the interrupted run exactly (bts_main.py would
    run the interrupted epoch again from its start). Says what it restored on stdout."""
    step = 0 if config["retrain"] else saved_step
    if step >= total:
        raise ConfigError(f"{source} is at global step {step}, and the run has {total} steps ({config['num_epochs']} "
                          f"epochs x {per_epoch}): nothing left to train; raise num_epochs, or set retrain: true")
    epoch, skip = divmod(step, per_epoch)
    optimizer = "optimizer state restored" if optimizer_restored else "no optimizer state in it: a fresh AdamW"
    where = f"global step {step} (epoch {epoch}, batch {skip} of {per_epoch})"
    if config["retrain"]:
        where += f"; retrain: true, so not at its step {saved_step}"
    print(f"resuming from {source}: {where}; {optimizer}", flush=True)
    return Start(step, epoch, skip)


class RunProgress:
    """A run's bookkeeping besides the weights, the same in both frameworks: progress bar, loss log and
    checkpoint cadence (every `save_freq` steps and after each epoch). `save(step)` writes a checkpoint
    and returns its path. Only the lead process (rank 0) logs and saves; `on_step` / `on_epoch` are the
    training loop's callbacks."""

    def __init__(self, config, total, save, log_name, desc, lead=True, start=Start()):
        self.config, self.total, self.save, self.desc, self.lead = config, total, save, desc, lead
        self.log = LossLog(run_folder(config) / log_name) if lead else None
        self.bar = tqdm(total=total, initial=start.global_step, desc=desc, dynamic_ncols=True,
                        disable=None if lead else True)
        self.saved, self.last = [], {}

    def on_step(self, record):
        self.last.update(record)
        self.bar.update(1)
        self.bar.set_postfix(epoch=record["epoch"], lr=f"{record['lr']:.2e}", loss=f"{record['loss']:.4f}")
        done = record["step"] + 1
        if self.lead:
            self.log.write(record)
            if self.config["save_freq"] and done % self.config["save_freq"] == 0 and done < self.total:
                self.saved.append(self.save(done))

    def on_epoch(self, epoch, global_step):
        if self.lead:
            self.saved.append(self.save(global_step))

    def close(self):
        self.bar.close()
        if self.log is not None:
            self.log.close()

    def summary(self, steps):
        return {"desc": self.desc, "steps": steps, "last": self.last, "folder": str(run_folder(self.config)),
                "checkpoints": [str(p) for p in self.saved], "loss_log": str(self.log.path) if self.log else None}


def summary_line(summary):
    """One line for the end of a run: steps, last loss, and the files written where."""
    last, checkpoints = summary["last"], list(dict.fromkeys(Path(p).name for p in summary["checkpoints"]))
    written = ([_listed(checkpoints)] if checkpoints else []) + [Path(summary["loss_log"]).name]
    return (f"{summary['desc']}: {summary['steps']} steps, last loss {last['loss']:.4f} (epoch {last['epoch']}, "
            f"lr {last['lr']:.2e}); wrote {summary['folder']}/: {', '.join(written)}")


def synthetic_tree(config):
    """Points `config` at a synthetic tree rooted at data_path (default <log_directory>/synthetic_<dataset>),
    writing it first if its training list is missing."""
    dataset = config["dataset"]
    root = Path(config["data_path"] or Path(config["log_directory"]) / f"synthetic_{dataset}")
    train_list = root / f"{dataset}_train.txt"
    if not train_list.is_file():
        write_tree(root, dataset, config["synthetic_images"], seed=config["seed"])
    # the layout bts_data.synthetic writes: images under raw/ and depth under gt/ (KITTI), both in sync/ (NYU)
    data_path, gt_path = (root / "raw", root / "gt") if dataset == "kitti" else (root / "sync", root / "sync")
    return {**config, "data_path": str(data_path), "gt_path": str(gt_path), "filenames_file": str(train_list)}


def epochs(step, batches, num_epochs, on_step=None, on_epoch=None, start_epoch=0, global_step=0):
    """The training loop. `step(batch)` trains on one batch and returns (loss, the LR that step used);
    `batches(epoch)` gives that epoch's batches; `on_step(record)` receives step, epoch, lr, loss and time
    (s); `on_epoch(epoch, global_step)` runs after each epoch. Returns the global step reached."""
    for epoch in range(start_epoch, num_epochs):
        for batch in batches(epoch):
            start = time.perf_counter()
            loss, lr = step(batch)
            record = {"step": global_step, "epoch": epoch, "lr": lr, "loss": loss, "time": time.perf_counter() - start}
            global_step += 1
            if on_step is not None:
                on_step(record)
        if on_epoch is not None:
            on_epoch(epoch, global_step)
    return global_step


def train_run(config, model, optimizer, *, make_loader, build_scheduler, run_epochs, save, log_name, desc,
              saved=None, lead=True, shard=None):
    """What fit() does once its model and optimizer are built, the same in both frameworks: the samples and
    the run's length, where a resumed run starts, the scheduler, the bookkeeping (RunProgress) and the
    epochs. The framework supplies its make_loader, build_scheduler and run_epochs; `save(step)` writes a
    checkpoint; `saved` is (global step, optimizer restored, source) of the state a run resumes; `shard(batch)`
    is this process's share of a global batch. Returns the run's summary."""
    samples = BtsSamples(config)
    per_epoch, total = schedule_length(config, len(samples))
    start = resume_at(config, *saved, per_epoch, total) if saved else Start()
    scheduler = build_scheduler(optimizer, total, end_learning_rate(config), start.global_step)
    run = RunProgress(config, total, save, log_name, desc, lead=lead, start=start)

    def batches(epoch):
        loader = make_loader(samples, batch_size=config["batch_size"], seed=config["seed"], epoch=epoch,
                             shuffle=True, num_workers=config["num_threads"], skip_batches=start.batches_done(epoch))
        return loader if shard is None else map(shard, loader)

    try:
        steps = run_epochs(model, optimizer, scheduler, batches, config["num_epochs"], MIN_GT_DEPTH[config["dataset"]],
                           run.on_step, run.on_epoch, start.epoch, start.global_step)
    finally:
        run.close()
    return run.summary(steps)
