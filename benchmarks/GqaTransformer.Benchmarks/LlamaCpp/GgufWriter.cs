using System.Text;
using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.LlamaCpp;

/// <summary>
/// Writes a <see cref="DecoderModel"/> as a GGUF v3 file that llama.cpp runs (architecture "llama", no vocabulary):
/// matrices in f16, norms in f32, names and q/k row order as llama.cpp's own HF converter produces them
/// (ggml's docs/gguf.md). For benchmarking llama.cpp on exactly our weights.
/// </summary>
internal static class GgufWriter
{
    private const int Alignment = 32;
    private enum ValueType : uint { UInt32 = 4, Float32 = 6, String = 8 }
    private const uint TypeF32 = 0, TypeF16 = 1;

    public static void Write(DecoderModel model, string path)
    {
        var config = model.Config;
        var metadata = new List<(string Key, ValueType Type, object Value)>
        {
            ("general.architecture", ValueType.String, "llama"),
            ("general.name", ValueType.String, "gqatransformer-benchmark"),
            ("general.alignment", ValueType.UInt32, (uint)Alignment),
            ("general.file_type", ValueType.UInt32, 1u), // mostly f16
            ("llama.vocab_size", ValueType.UInt32, (uint)config.VocabSize),
            ("llama.context_length", ValueType.UInt32, (uint)config.MaxPositionEmbeddings),
            ("llama.embedding_length", ValueType.UInt32, (uint)config.HiddenSize),
            ("llama.block_count", ValueType.UInt32, (uint)config.NumHiddenLayers),
            ("llama.feed_forward_length", ValueType.UInt32, (uint)config.IntermediateSize),
            ("llama.rope.dimension_count", ValueType.UInt32, (uint)config.HeadDim),
            ("llama.attention.head_count", ValueType.UInt32, (uint)config.NumAttentionHeads),
            ("llama.attention.head_count_kv", ValueType.UInt32, (uint)config.NumKeyValueHeads),
            ("llama.attention.key_length", ValueType.UInt32, (uint)config.HeadDim),
            ("llama.attention.value_length", ValueType.UInt32, (uint)config.HeadDim),
            ("llama.attention.layer_norm_rms_epsilon", ValueType.Float32, (float)config.RmsNormEps),
            ("llama.rope.freq_base", ValueType.Float32, (float)config.RopeTheta),
            ("tokenizer.ggml.model", ValueType.String, "no_vocab"),
        };

        using var scope = NewDisposeScope();
        var weights = model.state_dict();
        var tensors = new List<(string Name, Tensor Data)>
        {
            ("token_embd.weight", weights["model.embed_tokens.weight"].to(ScalarType.Float16)),
            ("output_norm.weight", weights["model.norm.weight"].to(ScalarType.Float32)),
            ("output.weight", (config.TieWordEmbeddings ? weights["model.embed_tokens.weight"] : weights["lm_head.weight"]).to(ScalarType.Float16)),
        };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            tensors.Add(($"blk.{i}.attn_norm.weight", weights[p + "input_layernorm.weight"].to(ScalarType.Float32)));
            tensors.Add(($"blk.{i}.attn_q.weight", RopeRowOrder(weights[p + "self_attn.q_proj.weight"], config.NumAttentionHeads).to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.attn_k.weight", RopeRowOrder(weights[p + "self_attn.k_proj.weight"], config.NumKeyValueHeads).to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.attn_v.weight", weights[p + "self_attn.v_proj.weight"].to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.attn_output.weight", weights[p + "self_attn.o_proj.weight"].to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.ffn_norm.weight", weights[p + "post_attention_layernorm.weight"].to(ScalarType.Float32)));
            tensors.Add(($"blk.{i}.ffn_gate.weight", weights[p + "mlp.gate_proj.weight"].to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.ffn_up.weight", weights[p + "mlp.up_proj.weight"].to(ScalarType.Float16)));
            tensors.Add(($"blk.{i}.ffn_down.weight", weights[p + "mlp.down_proj.weight"].to(ScalarType.Float16)));
        }

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        using var writer = new BinaryWriter(stream, Encoding.UTF8);
        writer.Write(Encoding.ASCII.GetBytes("GGUF"));
        writer.Write(3u);
        writer.Write((ulong)tensors.Count);
        writer.Write((ulong)metadata.Count);
        foreach (var (key, type, value) in metadata)
        {
            WriteString(writer, key);
            writer.Write((uint)type);
            switch (value)
            {
                case uint u: writer.Write(u); break;
                case float f: writer.Write(f); break;
                case string s: WriteString(writer, s); break;
            }
        }
        ulong offset = 0;
        foreach (var (name, data) in tensors)
        {
            WriteString(writer, name);
            writer.Write((uint)data.dim());
            foreach (long size in data.shape.Reverse()) writer.Write((ulong)size); // ggml lists the innermost dimension first
            writer.Write(data.dtype == ScalarType.Float16 ? TypeF16 : TypeF32);
            writer.Write(offset);
            offset += Aligned((ulong)(data.numel() * data.element_size()));
        }
        Pad(writer);
        foreach (var (_, data) in tensors)
        {
            writer.Flush();
            TensorBytes.WriteTo(writer.BaseStream, data);
            Pad(writer);
        }
    }

    /// <summary>llama.cpp's converter reorders q/k rows from HF's rotate-half layout to its interleaved RoPE pairs.</summary>
    private static Tensor RopeRowOrder(Tensor weight, int heads)
    {
        long rows = weight.shape[0], columns = weight.shape[1];
        return weight.reshape(heads, 2, rows / heads / 2, columns).transpose(1, 2).reshape(rows, columns);
    }

    private static ulong Aligned(ulong size) => (size + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter writer)
    {
        long remainder = writer.BaseStream.Position % Alignment;
        if (remainder != 0) writer.Write(new byte[Alignment - remainder]);
    }

    private static void WriteString(BinaryWriter writer, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }
}
