use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::tensor::backend::Backend;
use segger_data::{TileDataset, TileLoader};
use segger_model::{GatBackend, GraphInput, SeggerConfig};

/// One training or validation batch on the device.
#[derive(Debug, Clone)]
pub struct SeggerBatch<B: Backend> {
    /// The collated tiles.
    pub input: GraphInput<B>,
    /// Number of transcripts in the batch.
    pub num_tx: usize,
}

/// Figures of one completed pass over a loader (one epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochStats {
    /// Wall seconds from the start of the pass to its last batch being consumed.
    pub wall: f64,
    /// Transcripts delivered.
    pub transcripts: u64,
    /// Seconds the consumer waited for data.
    pub wait: f64,
    /// Batches delivered since the start of the run, at the end of this pass.
    pub total_batches: u64,
}

/// Throughput bookkeeping shared between a loader and the metric logger.
#[derive(Debug, Default)]
pub struct LoaderStats {
    /// Completed passes, by epoch index (0-based, counted from the start of the run).
    pub completed: Mutex<std::collections::HashMap<u64, EpochStats>>,
    /// Transcripts delivered in the current epoch.
    pub transcripts: AtomicU64,
    /// Batches delivered in the current epoch.
    pub batches: AtomicU64,
    /// Nanoseconds the consumer waited for data in the current epoch.
    pub wait_ns: AtomicU64,
    /// Nanoseconds spent moving batches to the device in the current epoch.
    pub upload_ns: AtomicU64,
    /// When the current epoch's iteration started.
    pub started: Mutex<Option<Instant>>,
    /// Batches delivered since the start of the run (global step count).
    pub total_batches: AtomicU64,
}

impl LoaderStats {
    fn reset(&self) {
        self.transcripts.store(0, Ordering::Relaxed);
        self.batches.store(0, Ordering::Relaxed);
        self.wait_ns.store(0, Ordering::Relaxed);
        self.upload_ns.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap() = Some(Instant::now());
    }

    /// Seconds since the epoch's iteration started.
    pub fn elapsed(&self) -> f64 {
        self.started
            .lock()
            .unwrap()
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds the consumer waited for the loader in this epoch.
    pub fn wait_seconds(&self) -> f64 {
        Duration::from_nanos(self.wait_ns.load(Ordering::Relaxed)).as_secs_f64()
    }
}

/// burn's [`DataLoader`] over a split's tiles: each `iter()` is one epoch, shuffled (when
/// asked) by `seed` and the epoch number, read and collated on background threads.
pub struct TileBatchLoader<B: Backend> {
    dataset: TileDataset,
    config: Arc<SeggerConfig>,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    workers: usize,
    epoch: Arc<AtomicU64>,
    device: B::Device,
    range: Option<(usize, usize)>,
    /// Throughput of the current epoch.
    pub stats: Arc<LoaderStats>,
}

impl<B: GatBackend> TileBatchLoader<B> {
    /// A loader over `dataset` for a model of `config`. `first_epoch` is the epoch number of the
    /// first `iter()` call (0, or the checkpoint's epoch when resuming), so that a resumed run
    /// sees the same shuffles as an uninterrupted one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: TileDataset,
        config: SeggerConfig,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        workers: usize,
        first_epoch: u64,
        device: B::Device,
    ) -> Self {
        Self {
            dataset,
            config: Arc::new(config),
            batch_size: batch_size.max(1),
            shuffle,
            seed,
            workers: workers.max(1),
            epoch: Arc::new(AtomicU64::new(first_epoch)),
            device,
            range: None,
            stats: Arc::new(LoaderStats::default()),
        }
    }

    fn num_batches(&self) -> usize {
        self.dataset.len().div_ceil(self.batch_size)
    }
}

struct Iter<'a, B: Backend> {
    inner: TileLoader,
    epoch: u64,
    recorded: bool,
    loader: &'a TileBatchLoader<B>,
    done: usize,
    total: usize,
}

impl<B: GatBackend> Iterator for Iter<'_, B> {
    type Item = SeggerBatch<B>;

    fn next(&mut self) -> Option<Self::Item> {
        let t0 = Instant::now();
        let stats = &self.loader.stats;
        let Some(res) = self.inner.next() else {
            if !self.recorded {
                self.recorded = true;
                let e = EpochStats {
                    wall: stats.elapsed(),
                    transcripts: stats.transcripts.load(Ordering::Relaxed),
                    wait: stats.wait_seconds(),
                    total_batches: stats.total_batches.load(Ordering::Relaxed),
                };
                stats.completed.lock().unwrap().insert(self.epoch, e);
            }
            return None;
        };
        stats
            .wait_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // Tiles were validated when the run started; a failure here is a file changed or
        // broken since then, and there is no way to report it through burn's iterator.
        let loaded = res.unwrap_or_else(|e| panic!("reading a batch failed: {e}"));
        let t1 = Instant::now();
        let input = GraphInput::from_graph(
            &loaded.batch.graph,
            &self.loader.config,
            &self.loader.device,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", loaded.paths[0].display()));
        stats
            .upload_ns
            .fetch_add(t1.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let num_tx = input.num_tx;
        stats
            .transcripts
            .fetch_add(num_tx as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.total_batches.fetch_add(1, Ordering::Relaxed);
        self.done += 1;
        Some(SeggerBatch { input, num_tx })
    }
}

impl<B: GatBackend> DataLoaderIterator<SeggerBatch<B>> for Iter<'_, B> {
    fn progress(&self) -> Progress {
        Progress::new(self.done, self.total)
    }
}

impl<B: GatBackend> DataLoader<B, SeggerBatch<B>> for TileBatchLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<SeggerBatch<B>> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed);
        self.stats.reset();
        let mut order = self.dataset.order(self.shuffle, self.seed, epoch);
        if let Some((s, e)) = self.range {
            let bs = self.batch_size;
            order = order.into_iter().skip(s * bs).take((e - s) * bs).collect();
        }
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let total = chunks.len();
        let inner = self
            .dataset
            .loader_for(chunks, self.workers, 2 * self.workers);
        Box::new(Iter {
            inner,
            epoch,
            recorded: false,
            loader: self,
            done: 0,
            total,
        })
    }

    fn num_items(&self) -> usize {
        match self.range {
            Some((s, e)) => ((e - s) * self.batch_size)
                .min(self.dataset.len().saturating_sub(s * self.batch_size)),
            None => self.dataset.len(),
        }
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, SeggerBatch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone_shallow()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, SeggerBatch<B>>> {
        // `start..end` are item (tile) positions; round to whole batches.
        let bs = self.batch_size;
        let (s, e) = (start / bs, end.div_ceil(bs).min(self.num_batches()));
        Arc::new(Self {
            range: Some((s, e)),
            ..self.clone_shallow()
        })
    }
}

impl<B: GatBackend> TileBatchLoader<B> {
    fn clone_shallow(&self) -> Self {
        Self {
            dataset: self.dataset.clone(),
            config: Arc::clone(&self.config),
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            seed: self.seed,
            workers: self.workers,
            epoch: Arc::clone(&self.epoch),
            device: self.device.clone(),
            range: self.range,
            stats: Arc::clone(&self.stats),
        }
    }
}
