"""A small Llama decoder computed exactly as Hugging Face's LlamaForCausalLM, plus export/import of the
Hugging Face model folder (config.json, generation_config.json, model.safetensors written by hand).

Layout follows HF: q/k/v/o projections without bias, RoPE rotate-half (first half / second half of
each head), GQA where query head h reads KV head h // (H / G), SwiGLU MLP, RMSNorm computed in float32,
tied input/output embeddings.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


ATTN_CHUNK = 512  # query block size of the causal attention (speed only; same result)


class Config:
    def __init__(self, vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=4096,
                 rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1,
                 eos_token_id=2):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.tie_word_embeddings = tie_word_embeddings
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id

    def to_hf(self):
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": True,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }

    @staticmethod
    def from_hf(d):
        keys = Config().__dict__.keys()
        return Config(**{k: d[k] for k in keys if k in d})


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype)


def rope_cos_sin(positions, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
                                / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.g, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.h * self.hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.g * self.hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.g * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.g, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.g, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.g
        if rep > 1:  # HF repeat_kv: query head h uses KV head h // rep
            k = k[:, :, None].expand(b, self.g, rep, t, self.hd).reshape(b, self.h, t, self.hd)
            v = v[:, :, None].expand(b, self.g, rep, t, self.hd).reshape(b, self.h, t, self.hd)
        scale = 1.0 / math.sqrt(self.hd)
        C = ATTN_CHUNK
        if x.is_cuda and hasattr(F, "scaled_dot_product_attention"):
            # GPU (torch >= 2.0): the fused kernel, same math (causal, scale 1/sqrt(head_dim)).
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif t <= C:
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask
            out = torch.matmul(torch.softmax(scores, dim=-1), v)
        else:
            # Same math, less work: query block [s, e) only needs keys [0, e); only the diagonal
            # block needs the causal mask.
            outs = []
            for s in range(0, t, C):
                e = min(t, s + C)
                sc = torch.matmul(q[:, :, s:e], k[:, :, :e].transpose(-1, -2)) * scale
                sc = torch.cat([sc[..., :s], sc[..., s:] + mask[s:e, s:e]], dim=-1) if s > 0 else sc + mask[s:e, :e]
                outs.append(torch.matmul(torch.softmax(sc, dim=-1), v[:, :, :e]))
            out = torch.cat(outs, dim=2)
        out = out.transpose(1, 2).reshape(b, t, self.h * self.hd)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyLlama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.reset_parameters()

    def reset_parameters(self):
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "norm.weight":
                nn.init.ones_(p)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.num_hidden_layers))
            else:
                nn.init.normal_(p, 0.0, std)

    def hidden(self, ids):
        """Final-normed hidden states for ids [B, T] at positions 0..T-1."""
        b, t = ids.shape
        c = self.config
        cos, sin = rope_cos_sin(torch.arange(t, device=ids.device), c.head_dim, c.rope_theta)
        mask = torch.full((t, t), float("-inf"), device=ids.device).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def logits(self, h):
        return F.linear(h, self.embed_tokens.weight)

    def forward(self, ids):
        return self.logits(self.hidden(ids))

    @torch.no_grad()
    def greedy(self, ids, max_new_tokens, eos_id=None):
        """Greedy decoding by full recomputation (simple and exact; prompts here are short enough)."""
        seq = list(ids)
        out = []
        for _ in range(max_new_tokens):
            h = self.hidden(torch.tensor([seq]))
            nxt = int(self.logits(h[0, -1]).argmax())
            out.append(nxt)
            seq.append(nxt)
            if eos_id is not None and nxt == eos_id:
                break
        return out

    def hf_state(self):
        """Tensors under Hugging Face LlamaForCausalLM names (tied: no lm_head.weight)."""
        d = {}
        for name, p in self.state_dict().items():
            d["model." + name] = p.detach().float().cpu().contiguous()
        if not self.config.tie_word_embeddings:
            d["lm_head.weight"] = d["model.embed_tokens.weight"]
        return d

    def load_hf_state(self, d):
        sd = {k[len("model."):]: v for k, v in d.items() if k.startswith("model.")}
        self.load_state_dict(sd, strict=True)


def write_safetensors(path, tensors, dtype="F32"):
    """dtype "F32", or "BF16" (round to nearest even, as torch's conversion: half the bytes)."""
    if dtype not in ("F32", "BF16"):
        raise ValueError(f"safetensors dtype must be F32 or BF16, got {dtype}")
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu().to(torch.float32).contiguous()
        arr = t.numpy() if dtype == "F32" else t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
        out[name] = (dtype, list(t.shape), arr.reshape(-1))
    safetensors_io.write_raw(path, out)


def read_safetensors(path):
    """{name: float32 tensor}; BF16 widened exactly (its bits are a float32's high half)."""
    out = {}
    for name, (dtype, shape, arr) in safetensors_io.read_raw(path).items():
        if dtype == "BF16":
            arr = (arr.astype("<u4") << 16).view("<f4")
        out[name] = torch.from_numpy(arr.astype("<f4").reshape(shape))
    return out


def export_hf(model, folder, tokenizer_model_path, dtype="F32"):
    os.makedirs(folder, exist_ok=True)
    c = model.config
    with open(os.path.join(folder, "config.json"), "w") as f:
        hf = c.to_hf()
        hf["torch_dtype"] = {"F32": "float32", "BF16": "bfloat16"}[dtype]  # what the weights are stored in
        json.dump(hf, f, indent=2)
        f.write("\n")
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id, "do_sample": False}, f,
                  indent=2)
        f.write("\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": None,
            "model_max_length": c.max_position_embeddings,
            "legacy": True,
            "clean_up_tokenization_spaces": False,
        }, f, indent=2)
        f.write("\n")
    with open(tokenizer_model_path, "rb") as src:
        blob = src.read()
    with open(os.path.join(folder, "tokenizer.model"), "wb") as dst:
        dst.write(blob)
    write_safetensors(os.path.join(folder, "model.safetensors"), model.hf_state(), dtype)


def load_hf(folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = Config.from_hf(json.load(f))
    m = TinyLlama(c)
    m.load_hf_state(read_safetensors(os.path.join(folder, "model.safetensors")))
    m.eval()
    return m
