using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// A decoder written out in plain libtorch ops from transformers' modeling files (eager attention, repeat_kv, masks as
/// masking_utils builds them), one model type at a time, reading nothing of our family code: the independent reference
/// the family tests compare against. float64 throughout; parameters by HF key.
/// </summary>
internal static class TextbookDecoder
{
    public static Tensor Logits(DecoderConfig c, IReadOnlyDictionary<string, Tensor> w, Tensor ids)
    {
        using var scope = NewDisposeScope();
        string type = c.ModelType;
        bool gemma = type is "gemma2" or "gemma3_text", olmo = type == "olmo2", phi = type == "phi3";
        Tensor W(string key) => w[key].to(ScalarType.Float64);
        Tensor? Maybe(string key) => w.TryGetValue(key, out var t) ? t.to(ScalarType.Float64) : null;
        Tensor Norm(Tensor x, Tensor weight)                             // Llama: w·x̂; OLMo 2: the same in float64; Gemma: (1 + w)·x̂
        {
            var normalised = x * (x.pow(2).mean([-1], keepdim: true) + c.RmsNormEps).rsqrt();
            return normalised * (gemma ? weight + 1 : weight);
        }
        Tensor Linear(Tensor x, string prefix) => Maybe(prefix + ".bias") is { } b ? x.matmul(W(prefix + ".weight").t()) + b : x.matmul(W(prefix + ".weight").t());

        long batch = ids.size(0), t = ids.size(1);
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, d = c.HeadDim;
        var h = W("model.embed_tokens.weight").index_select(0, ids.flatten()).view(batch, t, c.HiddenSize);
        if (gemma) h = h * Math.Sqrt(c.HiddenSize);
        var position = arange(t, ScalarType.Float64);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            bool sliding = c.SlidingWindow is not null && (c.LayerTypes is { } types ? types[i] == "sliding_attention" : type switch
            {
                "gemma2" => i % 2 == 0,
                "gemma3_text" => (i + 1) % (c.SlidingWindowPattern ?? 6) != 0,
                "qwen2" or "qwen3" => c.UseSlidingWindow == true && i >= (c.MaxWindowLayers ?? 28),
                "smollm3" => c.UseSlidingWindow == true && (i + 1) % (c.NoRopeLayerInterval ?? 4) == 0,
                "olmo2" => false,
                _ => true,
            });
            bool rope = type != "smollm3" || (c.NoRopeLayers is { } flags ? flags[i] == 1 : (i + 1) % (c.NoRopeLayerInterval ?? 4) != 0);
            double theta = type == "gemma3_text" && sliding ? c.RopeLocalBaseFreq ?? 10_000 : c.RopeTheta;
            double linear = type == "gemma3_text" && sliding ? 1 : c.RopeScaling is { RopeType: "linear" } s ? s.Factor!.Value : 1;
            int rotary = phi ? (int)(d * (c.PartialRotaryFactor ?? 1.0)) : d;

            var x = h;
            var attnIn = olmo ? x : Norm(x, W(p + "input_layernorm.weight"));
            Tensor q, k, v;
            if (phi)
            {
                var qkv = Linear(attnIn, p + "self_attn.qkv_proj");
                (q, k, v) = (qkv.narrow(-1, 0, heads * d), qkv.narrow(-1, heads * d, kvHeads * d), qkv.narrow(-1, (heads + kvHeads) * d, kvHeads * d));
            }
            else (q, k, v) = (Linear(attnIn, p + "self_attn.q_proj"), Linear(attnIn, p + "self_attn.k_proj"), Linear(attnIn, p + "self_attn.v_proj"));
            if (olmo) (q, k) = (Norm(q, W(p + "self_attn.q_norm.weight")), Norm(k, W(p + "self_attn.k_norm.weight")));
            q = q.view(batch, t, heads, d).transpose(1, 2);
            k = k.view(batch, t, kvHeads, d).transpose(1, 2);
            v = v.view(batch, t, kvHeads, d).transpose(1, 2);
            if (type is "qwen3" or "gemma3_text") (q, k) = (Norm(q, W(p + "self_attn.q_norm.weight")), Norm(k, W(p + "self_attn.k_norm.weight")));
            if (rope)
            {
                var inverse = 1.0 / pow(theta, arange(0, rotary, 2, ScalarType.Float64) / rotary) / linear;
                var angles = position.unsqueeze(-1) * inverse;                 // [T, R/2]
                var emb = cat([angles, angles], -1);
                (q, k) = (Rotate(q, emb.cos(), emb.sin(), rotary), Rotate(k, emb.cos(), emb.sin(), rotary));
            }
            k = k.repeat_interleave(heads / kvHeads, 1);                        // repeat_kv
            v = v.repeat_interleave(heads / kvHeads, 1);
            double scale = gemma ? Math.Pow(c.QueryPreAttnScalar ?? d, -0.5) : Math.Pow(d, -0.5);
            var scores = q.matmul(k.transpose(2, 3)) * scale;
            if (gemma && c.AttnLogitSoftcapping is { } cap) scores = (scores / cap).tanh() * cap;
            var query = arange(t).view(t, 1);
            var key = arange(t).view(1, t);
            var allowed = key <= query;
            if (sliding) allowed = allowed.logical_and(query - key < c.SlidingWindow!.Value);
            scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
            var o = scores.softmax(-1).matmul(v).transpose(1, 2).reshape(batch, t, heads * d);
            o = Linear(o, p + "self_attn.o_proj");
            if (gemma || olmo) o = Norm(o, W(p + "post_attention_layernorm.weight"));
            h = x + o;

            var mlpIn = olmo ? h : Norm(h, W(p + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")));
            Tensor gate, up;
            if (phi)
            {
                var gateUp = Linear(mlpIn, p + "mlp.gate_up_proj");
                long inner = gateUp.size(-1) / 2;
                (gate, up) = (gateUp.narrow(-1, 0, inner), gateUp.narrow(-1, inner, inner));
            }
            else (gate, up) = (Linear(mlpIn, p + "mlp.gate_proj"), Linear(mlpIn, p + "mlp.up_proj"));
            var activated = gemma                                              // gelu_pytorch_tanh, written out
                ? 0.5 * gate * (1 + (Math.Sqrt(2 / Math.PI) * (gate + 0.044715 * gate.pow(3))).tanh())
                : gate * gate.sigmoid();
            var m = Linear(activated * up, p + "mlp.down_proj");
            if (gemma || olmo) m = Norm(m, W(p + "post_feedforward_layernorm.weight"));
            h = h + m;
        }
        h = Norm(h, W("model.norm.weight"));
        var logits = h.matmul((Maybe("lm_head.weight") ?? W("model.embed_tokens.weight")).t());
        if (gemma && c.FinalLogitSoftcapping is { } final) logits = (logits / final).tanh() * final;
        return logits.MoveToOuterDisposeScope();
    }

    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin, int rotary)
    {
        var turning = x.narrow(-1, 0, rotary);
        long half = rotary / 2;
        var rotated = cat([turning.narrow(-1, half, half).neg(), turning.narrow(-1, 0, half)], -1);
        var turned = turning * cos + rotated * sin;
        return rotary == x.size(-1) ? turned : cat([turned, x.narrow(-1, rotary, x.size(-1) - rotary)], -1);
    }
}
