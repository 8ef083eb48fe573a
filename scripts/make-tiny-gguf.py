#!/usr/bin/env python3
"""Writes a tiny random-weight GPT-2-architecture GGUF with the real GPT-2
vocabulary, for end-to-end tests against llama.cpp's llama-server: the text
it generates is noise, but the protocol, streaming, batching and timing are
real. Usage: make-tiny-gguf.py VOCAB_GGUF OUT_GGUF (gguf-py on PYTHONPATH)."""
import sys

import numpy as np
import gguf

N_EMBD, N_LAYER, N_HEAD, N_CTX = 64, 2, 4, 2048
N_FF = 4 * N_EMBD


def main(vocab_path: str, out_path: str) -> None:
    reader = gguf.GGUFReader(vocab_path)

    def field(name):
        f = reader.fields[name]
        return f

    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]) for i in field("tokenizer.ggml.tokens").data]
    token_types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    merges = [bytes(field("tokenizer.ggml.merges").parts[i]).decode("utf-8") for i in field("tokenizer.ggml.merges").data]
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(out_path, "gpt2")
    w.add_name("tenantgate-tiny-gpt2-random")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_layer_norm_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    bos = int(field("tokenizer.ggml.bos_token_id").parts[-1][0])
    eos = int(field("tokenizer.ggml.eos_token_id").parts[-1][0])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    # ChatML, so /v1/chat/completions works without a model-provided template.
    w.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    rng = np.random.default_rng(20261126)

    def rand(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shapes are ggml's ne reversed: (rows, cols) = (ne1, ne0).
    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD))
    w.add_tensor("position_embd.weight", rand(N_CTX, N_EMBD))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("output_norm.bias", np.zeros(N_EMBD, np.float32))
    w.add_tensor("output.weight", rand(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "attn_norm.bias", np.zeros(N_EMBD, np.float32))
        w.add_tensor(p + "attn_qkv.weight", rand(3 * N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_qkv.bias", np.zeros(3 * N_EMBD, np.float32))
        w.add_tensor(p + "attn_output.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_output.bias", np.zeros(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_norm.bias", np.zeros(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.bias", np.zeros(N_FF, np.float32))
        w.add_tensor(p + "ffn_down.weight", rand(N_EMBD, N_FF))
        w.add_tensor(p + "ffn_down.bias", np.zeros(N_EMBD, np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
