//! The training loop, with `Trainer`'s semantics: micro-batches grouped into optimizer steps
//! (`gradient_accumulation_steps`, a shorter last group at the end of an epoch), the loss of
//! each micro-batch divided by the counted tokens of the whole step, clipping by global norm
//! (the logged `grad_norm` is the norm before clipping), AdamW, a `LambdaLR` schedule (the
//! logged `learning_rate` is the one the step used), logging every `logging_steps`,
//! evaluation and checkpoints by strategy, early stopping, the best checkpoint.

use crate::args::{IntervalStrategy, TrainingArguments};
use crate::checkpoint::{self, write_atomically};
use crate::objective::Objective;
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::order::{mix, permutation};
use crate::schedule::{warmup_steps, Schedule};
use crate::state::{write_json, TrainerState};
use crate::{Result, TrainError};
use lmrs_core::Tensor;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Early stopping with `EarlyStoppingCallback`'s semantics: stop after `patience`
/// evaluations in a row that do not improve on the best metric by more than `threshold`.
#[derive(Debug, Clone, Copy)]
pub struct EarlyStopping {
    pub patience: usize,
    pub threshold: f64,
}

/// Options of a run beyond `TrainingArguments`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep the file order (a sequential sampler); otherwise each epoch is shuffled from the
    /// seed.
    pub no_shuffle: bool,
    pub early_stopping: Option<EarlyStopping>,
    /// Continue from this checkpoint folder.
    pub resume_from: Option<PathBuf>,
    /// Extra keys recorded in `training_args.json` (task, fields, augmentation...).
    pub extra_args: Map<String, Value>,
}

/// Where the run is, for progress displays.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub max_steps: usize,
    pub epoch: f64,
    pub loss: f64,
    pub learning_rate: f64,
    pub tokens_per_second: f64,
}

/// What a front end sees of a run.
pub trait Hooks {
    /// After every optimizer step.
    fn on_step(&mut self, _p: &Progress) {}
    /// After every `log_history` entry.
    fn on_log(&mut self, _entry: &Map<String, Value>) {}
    /// Polled after every step: `true` saves a checkpoint and stops (Ctrl-C).
    fn should_interrupt(&self) -> bool {
        false
    }
}

/// Hooks that show nothing.
pub struct Quiet;
impl Hooks for Quiet {}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: TrainerState,
    /// Why the run ended: `max_steps`, `early_stopping`.
    pub stopped_by: String,
}

/// Train `obj` on `train`, evaluating on `eval`, writing into `args.output_dir`.
pub fn train<O: Objective>(
    obj: &O,
    args: &TrainingArguments,
    train: &[O::Example],
    eval: Option<&[O::Example]>,
    opts: &RunOptions,
    hooks: &mut dyn Hooks,
) -> Result<Outcome> {
    args.validate()?;
    if train.is_empty() {
        return Err(TrainError::Args("no training examples".into()));
    }
    if (args.eval_strategy != IntervalStrategy::No || args.eval_on_start) && eval.is_none() {
        return Err(TrainError::Args(
            "evaluation (eval_strategy, eval_on_start) needs a validation set: give --validation or --validation-split".into(),
        ));
    }
    let out = PathBuf::from(&args.output_dir);
    let bs = args.per_device_train_batch_size;
    let ga = args.gradient_accumulation_steps;
    let batches_per_epoch = train.len().div_ceil(bs);
    let updates_per_epoch = batches_per_epoch.div_ceil(ga);
    let max_steps = if args.max_steps > 0 {
        args.max_steps as usize
    } else {
        (args.num_train_epochs * updates_per_epoch as f64).ceil() as usize
    };
    let epochs = max_steps.div_ceil(updates_per_epoch);
    let schedule = Schedule {
        kind: args.lr_scheduler_type,
        warmup: warmup_steps(args.warmup_steps, max_steps)?,
        total: max_steps,
    };
    let mut opt = AdamW::new(
        AdamWConfig {
            beta1: args.adam_beta1,
            beta2: args.adam_beta2,
            eps: args.adam_epsilon,
            weight_decay: args.weight_decay,
        },
        obj.params(),
        |k| obj.in_layer_norm(k),
    );
    let mut state = TrainerState {
        eval_steps: args.eval_every(),
        is_local_process_zero: true,
        is_world_process_zero: true,
        logging_steps: args.logging_steps,
        max_steps,
        num_train_epochs: epochs,
        save_steps: args.save_steps,
        train_batch_size: bs,
        ..Default::default()
    };
    if let Some(dir) = &opts.resume_from {
        state = resume(obj, &mut opt, dir, max_steps)?;
    }
    std::fs::create_dir_all(&out).map_err(crate::error::file_err(&out))?;
    let mut args_json = serde_json::to_value(args).map_err(|source| TrainError::Json {
        path: out.join("training_args.json"),
        source,
    })?;
    if let Value::Object(m) = &mut args_json {
        m.extend(opts.extra_args.clone());
    }

    let start = Instant::now();
    let mut run = Run {
        obj,
        args,
        opts,
        max_steps,
        out: &out,
        args_json: &args_json,
        eval,
        tr_loss: 0.0,
        last_logged: state.global_step,
        total_loss: 0.0,
        tokens: 0,
    };
    // As the Trainer's eval_on_start: logged at step 0, not a candidate for the best model.
    if args.eval_on_start && state.global_step == 0 {
        let metrics = run.evaluate(&mut state)?;
        hooks.on_log(&metrics);
    }
    let mut stopped_by = "max_steps".to_string();
    let mut last_grad_norm = 0.0;
    let mut last_lr = 0.0;
    'epochs: for epoch in 0..epochs {
        let order: Vec<usize> = if opts.no_shuffle {
            (0..train.len()).collect()
        } else {
            permutation(train.len(), mix(args.seed, &[epoch as u64]))
        };
        let order = if args.group_by_length {
            group_by_length(obj, train, order, bs, mix(args.seed, &[epoch as u64, 1]))
        } else {
            order
        };
        let batches: Vec<&[usize]> = order.chunks(bs).collect();
        for (update, group) in batches.chunks(ga).enumerate() {
            let global = epoch * updates_per_epoch + update;
            if global < state.global_step {
                continue; // done before the resume point
            }
            if state.global_step >= max_steps {
                break 'epochs;
            }
            let items: usize = group
                .iter()
                .flat_map(|b| b.iter())
                .map(|&i| obj.counted_tokens(&train[i]))
                .sum();
            let mut grads: Vec<Option<Tensor>> = vec![None; opt.params.len()];
            for (micro, b) in group.iter().enumerate() {
                let exs: Vec<&O::Example> = b.iter().map(|&i| &train[i]).collect();
                let seed = mix(args.seed, &[state.global_step as u64, micro as u64, 7]);
                let loss = {
                    let _train = lmrs_nn::mode::train_mode(seed);
                    obj.loss(&exs, args.label_smoothing_factor)?
                };
                let scaled = (loss.sum / items.max(1) as f64)?;
                let value = scaled.to_scalar::<f32>()?;
                if !value.is_finite() {
                    save_checkpoint(&run, &opt, &state).ok();
                    return Err(TrainError::NonFinite {
                        step: state.global_step + 1,
                        value,
                    });
                }
                let g = scaled.backward()?;
                for (slot, p) in grads.iter_mut().zip(&opt.params) {
                    if let Some(gi) = g.get(p.var.as_tensor()) {
                        *slot = Some(match slot.take() {
                            Some(acc) => (acc + gi)?,
                            None => gi.clone(),
                        });
                    }
                }
                run.tr_loss += value as f64;
                run.tokens += loss.count;
            }
            let grad_norm = clip_grad_norm(&mut grads, args.max_grad_norm)?;
            if !grad_norm.is_finite() {
                return Err(TrainError::NonFinite {
                    step: state.global_step + 1,
                    value: grad_norm as f32,
                });
            }
            let lr = args.learning_rate * schedule.factor(state.global_step);
            opt.step(lr, &grads)?;
            drop(grads);
            state.global_step += 1;
            let micro_done = (update * ga + group.len()).min(batches.len());
            state.epoch = epoch as f64 + micro_done as f64 / batches.len() as f64;
            last_grad_norm = grad_norm;
            last_lr = lr;
            hooks.on_step(&Progress {
                step: state.global_step,
                max_steps,
                epoch: state.epoch,
                loss: run.tr_loss / (state.global_step - run.last_logged).max(1) as f64,
                learning_rate: lr,
                tokens_per_second: run.tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
            let end_of_epoch = update + 1 == updates_per_epoch;
            if run.step_end(&mut state, &opt, grad_norm, lr, end_of_epoch, hooks)? {
                stopped_by = "early_stopping".into();
                break 'epochs;
            }
            if hooks.should_interrupt() {
                save_checkpoint(&run, &opt, &state)?;
                return Err(TrainError::Interrupted {
                    step: state.global_step,
                });
            }
        }
    }
    // Log what is left since the last entry, as the Trainer's end-of-epoch call does.
    if state.global_step > run.last_logged {
        run.log_train(&mut state, last_grad_norm, last_lr, hooks);
    }
    let runtime = start.elapsed().as_secs_f64();
    let mut summary = Map::new();
    summary.insert("epoch".into(), json!(state.epoch));
    summary.insert("step".into(), json!(state.global_step));
    summary.insert(
        "train_loss".into(),
        json!(run.total_loss / state.global_step.max(1) as f64),
    );
    summary.insert("train_runtime".into(), json!(runtime));
    summary.insert(
        "train_samples_per_second".into(),
        json!((max_steps * bs * ga) as f64 / runtime.max(1e-9)),
    );
    summary.insert(
        "train_steps_per_second".into(),
        json!(max_steps as f64 / runtime.max(1e-9)),
    );
    summary.insert(
        "train_tokens_per_second".into(),
        json!(run.tokens as f64 / runtime.max(1e-9)),
    );
    summary.insert("total_flos".into(), json!(0.0));
    state.log_history.push(summary.clone());
    hooks.on_log(&summary);
    // The final model at the root (`Trainer.save_model`), the best one when asked.
    if args.load_best_model_at_end {
        if let Some(best) = &state.best_model_checkpoint {
            obj.load_weights(Path::new(best))?;
        }
    }
    obj.save(&out)?;
    write_json(&args_json, &out.join("training_args.json"))?;
    state.save(&out.join("trainer_state.json"))?;
    Ok(Outcome { state, stopped_by })
}

/// What the step-end logic shares.
struct Run<'a, O: Objective> {
    obj: &'a O,
    args: &'a TrainingArguments,
    opts: &'a RunOptions,
    /// The step the run ends at (the Trainer evaluates and saves there under `steps`).
    max_steps: usize,
    out: &'a Path,
    args_json: &'a Value,
    eval: Option<&'a [O::Example]>,
    /// Summed micro-batch losses since the last log entry.
    tr_loss: f64,
    last_logged: usize,
    total_loss: f64,
    tokens: usize,
}

impl<O: Objective> Run<'_, O> {
    /// Log, evaluate, save as the strategies say; `true` when early stopping ends the run.
    fn step_end(
        &mut self,
        state: &mut TrainerState,
        opt: &AdamW,
        grad_norm: f64,
        lr: f64,
        end_of_epoch: bool,
        hooks: &mut dyn Hooks,
    ) -> Result<bool> {
        let a = self.args;
        let step = state.global_step;
        let due = |s: IntervalStrategy, every: usize| match s {
            IntervalStrategy::No => false,
            IntervalStrategy::Steps => step.is_multiple_of(every),
            IntervalStrategy::Epoch => end_of_epoch,
        };
        if step.is_multiple_of(a.logging_steps) {
            self.log_train(state, grad_norm, lr, hooks);
        }
        // The last step also evaluates and saves under the `steps` strategies, as the
        // Trainer's DefaultFlowCallback does.
        let last = step >= self.max_steps;
        let mut stop = false;
        if due(a.eval_strategy, a.eval_every())
            || (last && a.eval_strategy == IntervalStrategy::Steps)
        {
            let metrics = self.evaluate(state)?;
            hooks.on_log(&metrics);
            let key = a.best_metric_key();
            let tracked = a.metric_for_best_model.is_some()
                || a.load_best_model_at_end
                || self.opts.early_stopping.is_some();
            if tracked && !metrics.contains_key(&key) {
                // As the Trainer's KeyError: name the metrics this evaluation has.
                let have: Vec<&str> = metrics
                    .keys()
                    .map(String::as_str)
                    .filter(|k| k.starts_with("eval_"))
                    .collect();
                return Err(TrainError::Args(format!(
                    "--metric-for-best-model: the evaluation has no '{key}' (it has {})",
                    have.join(", ")
                )));
            }
            if let Some(value) = metrics.get(&key).and_then(Value::as_f64) {
                let greater = a.greater_is_better();
                let better = |v: f64, best: f64| if greater { v > best } else { v < best };
                if let Some(es) = self.opts.early_stopping {
                    let improved = match state.best_metric {
                        None => true,
                        Some(best) => better(value, best) && (value - best).abs() > es.threshold,
                    };
                    if improved {
                        state.early_stopping_patience_counter = 0;
                    } else {
                        state.early_stopping_patience_counter += 1;
                    }
                    stop = state.early_stopping_patience_counter >= es.patience;
                }
                if state.best_metric.is_none_or(|best| better(value, best)) {
                    state.best_metric = Some(value);
                    state.best_global_step = Some(step);
                }
            }
        }
        let save = due(a.save_strategy, a.save_steps)
            || (stop && a.save_strategy != IntervalStrategy::No)
            || (last && a.save_strategy == IntervalStrategy::Steps);
        if save {
            // The best checkpoint is the best step's folder once it exists on disk (saved now
            // or before); an evaluation between saves names none (`_save_checkpoint`).
            if let Some(best) = state.best_global_step {
                let dir = self.out.join(format!("checkpoint-{best}"));
                if best == step || dir.is_dir() {
                    state.best_model_checkpoint = Some(dir.display().to_string());
                }
            }
            save_checkpoint(self, opt, state)?;
        }
        Ok(stop)
    }

    fn log_train(
        &mut self,
        state: &mut TrainerState,
        grad_norm: f64,
        lr: f64,
        hooks: &mut dyn Hooks,
    ) {
        let steps = (state.global_step - self.last_logged).max(1) as f64;
        let mut e = Map::new();
        e.insert("epoch".into(), json!(state.epoch));
        e.insert("grad_norm".into(), json!(grad_norm));
        e.insert("learning_rate".into(), json!(lr));
        e.insert("loss".into(), json!(self.tr_loss / steps));
        e.insert("step".into(), json!(state.global_step));
        self.total_loss += self.tr_loss;
        self.tr_loss = 0.0;
        self.last_logged = state.global_step;
        state.log_history.push(e.clone());
        hooks.on_log(&e);
    }

    /// `eval_loss` as the Trainer's evaluation loop computes it: each batch's token-mean loss
    /// (label smoothing included), averaged over examples. Dropout is off.
    fn evaluate(&mut self, state: &mut TrainerState) -> Result<Map<String, Value>> {
        let eval = self.eval.unwrap_or(&[]);
        let t0 = Instant::now();
        let mut total = 0f64;
        for b in eval.chunks(self.args.per_device_eval_batch_size) {
            let exs: Vec<&O::Example> = b.iter().collect();
            let l = self.obj.loss(&exs, self.args.label_smoothing_factor)?;
            let mean = l.sum.to_scalar::<f32>()? as f64 / l.count.max(1) as f64;
            total += mean * b.len() as f64;
        }
        let task = self
            .obj
            .eval_metrics(eval, self.args.per_device_eval_batch_size)?;
        let secs = t0.elapsed().as_secs_f64();
        let mut m = Map::new();
        m.insert("epoch".into(), json!(state.epoch));
        m.insert("eval_loss".into(), json!(total / eval.len().max(1) as f64));
        for (k, v) in task {
            m.insert(format!("eval_{k}"), v);
        }
        m.insert("eval_runtime".into(), json!(secs));
        m.insert(
            "eval_samples_per_second".into(),
            json!(eval.len() as f64 / secs.max(1e-9)),
        );
        m.insert("step".into(), json!(state.global_step));
        state.log_history.push(m.clone());
        Ok(m)
    }
}

/// `checkpoint-STEP/` with the model, optimizer and state, written atomically; then the
/// oldest checkpoints beyond `save_total_limit` go (never the best one).
fn save_checkpoint<O: Objective>(
    run: &Run<'_, O>,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<()> {
    let dest = run.out.join(format!("checkpoint-{}", state.global_step));
    write_atomically(&dest, |dir| {
        run.obj.save(dir)?;
        checkpoint::save_optimizer(opt, &dir.join("optimizer.safetensors"))?;
        write_json(
            &json!({"schedule": "LambdaLR", "last_epoch": state.global_step}),
            &dir.join("scheduler.json"),
        )?;
        write_json(run.args_json, &dir.join("training_args.json"))?;
        state.save(&dir.join("trainer_state.json"))
    })?;
    if let Some(limit) = run.args.save_total_limit {
        let all = checkpoint::checkpoints(run.out);
        let best = state.best_model_checkpoint.clone().map(PathBuf::from);
        let removable: Vec<&PathBuf> = all
            .iter()
            .map(|(_, p)| p)
            .filter(|p| Some(*p) != best.as_ref())
            .collect();
        let keep = limit.saturating_sub(usize::from(best.is_some())).max(1);
        if removable.len() > keep {
            for p in &removable[..removable.len() - keep] {
                std::fs::remove_dir_all(p).map_err(crate::error::file_err(*p))?;
            }
        }
    }
    Ok(())
}

/// Load a checkpoint's weights, optimizer and state.
fn resume<O: Objective>(
    obj: &O,
    opt: &mut AdamW,
    dir: &Path,
    max_steps: usize,
) -> Result<TrainerState> {
    let err = |message: String| TrainError::Resume {
        path: dir.to_path_buf(),
        message,
    };
    let state_file = dir.join("trainer_state.json");
    if !state_file.is_file() {
        return Err(err("no trainer_state.json (not a checkpoint folder)".into()));
    }
    let state = TrainerState::load(&state_file)?;
    if state.global_step > max_steps {
        return Err(err(format!(
            "the checkpoint is at step {}, past this run's {max_steps} steps",
            state.global_step
        )));
    }
    obj.load_weights(dir)?;
    checkpoint::load_optimizer(opt, &dir.join("optimizer.safetensors"))?;
    if opt.step != state.global_step as u64 {
        return Err(err(format!(
            "optimizer state at step {} but trainer state at {}",
            opt.step, state.global_step
        )));
    }
    Ok(state)
}

/// `LengthGroupedSampler`: megabatches of 50 batches, each sorted by length (longest first),
/// from a seeded order.
fn group_by_length<O: Objective>(
    obj: &O,
    data: &[O::Example],
    order: Vec<usize>,
    bs: usize,
    seed: u64,
) -> Vec<usize> {
    let shuffled: Vec<usize> = permutation(order.len(), seed)
        .into_iter()
        .map(|i| order[i])
        .collect();
    let mut out = Vec::with_capacity(shuffled.len());
    for mega in shuffled.chunks(bs * 50) {
        let mut m = mega.to_vec();
        m.sort_by_key(|&i| std::cmp::Reverse(obj.length(&data[i])));
        out.extend(m);
    }
    out
}
