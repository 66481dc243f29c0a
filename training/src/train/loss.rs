//! Teacher-forced sequence-to-sequence batches and the token-level losses on them.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use mario::model::{pad_rows, EncoderInput, EncoderOutput, Mode, T5Model};

/// One training pair: the encoder input and the decoder's forced prefix (control tokens,
/// excluded from the loss) and target (ending with `</s>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqExample {
    /// Encoder ids, ending with `</s>`.
    pub input_ids: Vec<u32>,
    /// Decoder tokens before the target whose predictions are not trained.
    pub prefix: Vec<u32>,
    /// Target ids, ending with `</s>`.
    pub target_ids: Vec<u32>,
}

impl Seq2SeqExample {
    /// Tokens processed by a training step (encoder + decoder), for throughput figures.
    pub fn tokens(&self) -> usize {
        self.input_ids.len() + self.prefix.len() + self.target_ids.len()
    }
}

/// Padded tensors of a batch.
#[derive(Debug, Clone)]
pub struct Seq2SeqBatch {
    /// Encoder input.
    pub input: EncoderInput,
    /// `(B, T)` decoder input: `[start, prefix, target[..-1]]`, padded.
    pub decoder_ids: Tensor,
    /// `(B, T)` u32 labels: `[prefix, target]`, padded.
    pub labels: Tensor,
    /// `(B, T)` f32: 1 on target positions, 0 on prefix and padding.
    pub loss_mask: Tensor,
    /// Number of target tokens (the loss's denominator).
    pub target_tokens: usize,
    /// Encoder + decoder tokens, for throughput figures.
    pub tokens: usize,
}

impl Seq2SeqBatch {
    /// Pads `examples` into tensors on `device`.
    pub fn new(
        examples: &[&Seq2SeqExample],
        start: u32,
        pad: u32,
        device: &Device,
    ) -> Result<Self> {
        let inputs: Vec<Vec<u32>> = examples.iter().map(|e| e.input_ids.clone()).collect();
        let input = EncoderInput::from_rows(&inputs, pad, device)?;
        let mut dec = Vec::with_capacity(examples.len());
        let mut lab = Vec::with_capacity(examples.len());
        let mut masks = Vec::with_capacity(examples.len());
        for e in examples {
            let mut labels = e.prefix.clone();
            labels.extend_from_slice(&e.target_ids);
            let mut d = vec![start];
            d.extend_from_slice(&labels[..labels.len() - 1]);
            let mut m = vec![0u32; e.prefix.len()];
            m.extend(std::iter::repeat_n(1u32, e.target_ids.len()));
            dec.push(d);
            lab.push(labels);
            masks.push(m);
        }
        let (dec_flat, _) = pad_rows(&dec, pad);
        let (lab_flat, _) = pad_rows(&lab, pad);
        let (mask_flat, _) = pad_rows(&masks, 0);
        let b = examples.len();
        let t = dec_flat.len() / b;
        let target_tokens = examples.iter().map(|e| e.target_ids.len()).sum();
        Ok(Self {
            input,
            decoder_ids: Tensor::from_vec(dec_flat, (b, t), device)?,
            labels: Tensor::from_vec(lab_flat, (b, t), device)?,
            loss_mask: Tensor::from_vec(mask_flat, (b, t), device)?.to_dtype(DType::F32)?,
            target_tokens,
            tokens: examples.iter().map(|e| e.tokens()).sum(),
        })
    }
}

/// `(B, T)` log-probability of each label under `logits (B, T, V)`, in f32 (fused kernel on
/// the CPU, see [`super::kernels`]).
pub fn label_log_probs(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let flat = logits.to_dtype(DType::F32)?.reshape((b * t, v))?;
    let nll = super::kernels::token_nll(&flat, &labels.flatten_all()?)?;
    Ok(nll.neg()?.reshape((b, t))?)
}

/// Mean negative log-likelihood over the masked-in positions.
pub fn masked_nll(logits: &Tensor, labels: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let lp = label_log_probs(logits, labels)?;
    let total = mask.sum_all()?;
    Ok(((lp * mask)?.sum_all()?.neg()? / total)?)
}

/// Encodes and decodes a batch: `(encoder output, logits (B, T, V))`.
pub fn forward(
    model: &T5Model,
    batch: &Seq2SeqBatch,
    mode: Mode,
) -> Result<(EncoderOutput, Tensor)> {
    let enc = model.encode(&batch.input, mode)?;
    let logits = model.decode(&batch.decoder_ids, &enc, mode)?;
    Ok((enc, logits))
}

/// The SFT loss of a batch: mean NLL of the target tokens.
pub fn nll_loss(model: &T5Model, batch: &Seq2SeqBatch, mode: Mode) -> Result<Tensor> {
    let (_, logits) = forward(model, batch, mode)?;
    masked_nll(&logits, &batch.labels, &batch.loss_mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layout_shifts_targets_and_masks_prefix_and_padding() -> Result<()> {
        let a = Seq2SeqExample {
            input_ids: vec![5, 6, 1],
            prefix: vec![40, 41],
            target_ids: vec![7, 8, 1],
        };
        let b = Seq2SeqExample {
            input_ids: vec![9, 1],
            prefix: vec![40, 41],
            target_ids: vec![3, 1],
        };
        let batch = Seq2SeqBatch::new(&[&a, &b], 0, 0, &Device::Cpu)?;
        assert_eq!(
            batch.decoder_ids.to_vec2::<u32>()?,
            vec![vec![0, 40, 41, 7, 8], vec![0, 40, 41, 3, 0]]
        );
        assert_eq!(
            batch.labels.to_vec2::<u32>()?,
            vec![vec![40, 41, 7, 8, 1], vec![40, 41, 3, 1, 0]]
        );
        assert_eq!(
            batch.loss_mask.to_vec2::<f32>()?,
            vec![vec![0., 0., 1., 1., 1.], vec![0., 0., 1., 1., 0.]]
        );
        assert_eq!(batch.target_tokens, 5);
        Ok(())
    }

    /// Padding positions carry no weight: changing their logits or labels leaves the loss.
    #[test]
    fn loss_ignores_masked_positions() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::randn(0f32, 1.0, (2, 3, 5), &dev)?;
        let labels = Tensor::new(&[[1u32, 2, 3], [4, 0, 0]], &dev)?;
        let mask = Tensor::new(&[[1f32, 1., 1.], [1., 0., 0.]], &dev)?;
        let loss = masked_nll(&logits, &labels, &mask)?.to_scalar::<f32>()?;
        // hand-computed mean over the 4 real tokens
        let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?.to_vec3::<f32>()?;
        let want = -(lp[0][0][1] + lp[0][1][2] + lp[0][2][3] + lp[1][0][4]) / 4.0;
        assert!((loss - want).abs() < 1e-6);
        let noisy =
            logits.slice_assign(&[1..2, 1..3, 0..5], &Tensor::full(9f32, (1, 2, 5), &dev)?)?;
        let labels2 = Tensor::new(&[[1u32, 2, 3], [4, 3, 2]], &dev)?;
        let loss2 = masked_nll(&noisy, &labels2, &mask)?.to_scalar::<f32>()?;
        assert_eq!(loss, loss2);
        Ok(())
    }
}
