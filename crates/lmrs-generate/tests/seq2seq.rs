//! `Seq2SeqSession` over a mock encoder-decoder: cached == uncached, batch == alone.

mod common;

use common::{hash_logits, tokens};
use lmrs_core::{
    candle::IndexOp, DType, DecoderCache, Device, Error, Result, Seq2SeqLm, SpecialTokens, Tensor,
};
use lmrs_generate::{generate, EarlyStopping, GenerationConfig, Seq2SeqSession};

const EOS: u32 = 1;
const START: u32 = 0;
const VOCAB: usize = 48;

/// Logits depend on the source's first token and the decoder history.
struct MockSeq2Seq;

struct MockCache {
    source: Vec<u32>,
    history: Vec<Vec<u32>>,
    capacity: usize,
}

impl DecoderCache for MockCache {
    fn len(&self) -> usize {
        self.history.first().map_or(0, Vec::len)
    }
    fn reset(&mut self) {
        self.history.iter_mut().for_each(Vec::clear);
    }
    fn truncate(&mut self, len: usize) {
        self.history.iter_mut().for_each(|h| h.truncate(len));
    }
    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        self.source = rows.iter().map(|&r| self.source[r]).collect();
        self.history = rows.iter().map(|&r| self.history[r].clone()).collect();
        Ok(())
    }
}

impl Seq2SeqLm for MockSeq2Seq {
    type Cache = MockCache;

    fn encode(&self, input_ids: &Tensor, _mask: &Tensor) -> Result<Tensor> {
        Ok(input_ids.to_dtype(DType::F32)?.unsqueeze(2)?)
    }

    fn new_cache(&self, hidden: &Tensor, _mask: &Tensor, max_len: usize) -> Result<MockCache> {
        let source: Vec<f32> = hidden.i((.., 0, 0))?.to_vec1()?;
        Ok(MockCache {
            history: vec![Vec::new(); source.len()],
            source: source.into_iter().map(|s| s as u32).collect(),
            capacity: max_len,
        })
    }

    fn decode(&self, ids: &Tensor, cache: &mut MockCache) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let ids: Vec<Vec<u32>> = ids.to_vec2()?;
        let mut data = Vec::with_capacity(b * t * VOCAB);
        for (row, new) in ids.iter().enumerate() {
            for &tok in new {
                let h = &mut cache.history[row];
                h.push(tok);
                if h.len() > cache.capacity {
                    return Err(Error::InvalidInput("cache overflow".into()));
                }
                let mut key = vec![cache.source[row]];
                key.extend_from_slice(h);
                data.extend(hash_logits(&key, VOCAB, Some(EOS)));
            }
        }
        Ok(Tensor::from_vec(data, (b, t, VOCAB), &Device::Cpu)?)
    }

    fn special_tokens(&self) -> SpecialTokens {
        SpecialTokens {
            pad: Some(START),
            eos: vec![EOS],
            bos: None,
            decoder_start: Some(START),
        }
    }

    fn vocab_size(&self) -> usize {
        VOCAB
    }
}

fn generate_s2s(sources: &[u32], cfg: &GenerationConfig, use_cache: bool) -> Vec<Vec<Vec<u32>>> {
    let model = MockSeq2Seq;
    let n = sources.len();
    let ids = Tensor::from_vec(
        sources
            .iter()
            .flat_map(|&s| [s, 7, 8])
            .collect::<Vec<u32>>(),
        (n, 3),
        &Device::Cpu,
    )
    .unwrap();
    let mask = Tensor::ones((n, 3), DType::U32, &Device::Cpu).unwrap();
    let hidden = model.encode(&ids, &mask).unwrap();
    let max_len = cfg.max_length.unwrap();
    let mut session = Seq2SeqSession::new(&model, hidden, mask, max_len, use_cache).unwrap();
    assert_eq!(session.is_cached(), use_cache);
    let prompts = vec![vec![START]; n];
    let out = generate(&mut session, &prompts, cfg, &model.special_tokens(), None).unwrap();
    tokens(&out)
}

fn configs() -> Vec<GenerationConfig> {
    let greedy = GenerationConfig {
        max_length: Some(16),
        ..Default::default()
    };
    let beam = GenerationConfig {
        max_length: Some(16),
        num_beams: Some(4),
        num_return_sequences: Some(2),
        early_stopping: Some(EarlyStopping::Heuristic),
        no_repeat_ngram_size: Some(2),
        ..Default::default()
    };
    vec![greedy, beam]
}

#[test]
fn cached_equals_uncached() {
    for cfg in configs() {
        let sources = [3, 9, 17];
        let cached = generate_s2s(&sources, &cfg, true);
        assert_eq!(cached, generate_s2s(&sources, &cfg, false), "{cfg:?}");
        for seqs in &cached {
            for s in seqs {
                assert_eq!(s[0], START);
                assert!(s.len() <= 16);
            }
        }
    }
}

#[test]
fn batch_equals_inputs_alone() {
    for cfg in configs() {
        let sources = [3, 9, 17, 30];
        let batch = generate_s2s(&sources, &cfg, true);
        for (i, &s) in sources.iter().enumerate() {
            assert_eq!(batch[i], generate_s2s(&[s], &cfg, true)[0], "{cfg:?}");
        }
        // Inputs differ, so do their outputs.
        assert_ne!(batch[0], batch[1]);
    }
}
