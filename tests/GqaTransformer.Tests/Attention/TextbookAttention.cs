using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// The independent reference: attention written the way a textbook states it, one head at a time, with explicit
/// RoPE pair rotations computed in double precision, softmax(q kᵀ / √d) v, and the module's own weights.
/// </summary>
internal static class TextbookAttention
{
    public static Tensor Compute(IDictionary<string, Tensor> weights, Tensor x, int numHeads, int numKvHeads, int headDim,
        bool causal, double theta = 10000.0)
    {
        long b = x.shape[0], t = x.shape[1];
        int group = numHeads / numKvHeads;
        var x64 = x.to(ScalarType.Float64);
        var wq = weights["q_proj.weight"].to(ScalarType.Float64);
        var wk = weights["k_proj.weight"].to(ScalarType.Float64);
        var wv = weights["v_proj.weight"].to(ScalarType.Float64);
        var wo = weights["o_proj.weight"].to(ScalarType.Float64);
        var (cos, sin) = RopeTables(t, headDim, theta);
        var heads = new List<Tensor>();
        for (int h = 0; h < numHeads; h++)
        {
            int kv = h / group;
            var q = Rotate(x64.matmul(wq.narrow(0, h * headDim, headDim).t()), cos, sin);  // [B, T, D]
            var k = Rotate(x64.matmul(wk.narrow(0, kv * headDim, headDim).t()), cos, sin); // [B, T, D]
            var v = x64.matmul(wv.narrow(0, kv * headDim, headDim).t());                   // [B, T, D]
            var scores = q.matmul(k.transpose(1, 2)) / Math.Sqrt(headDim);                 // [B, T, T]
            if (causal)
                scores = scores.masked_fill(ones(t, t, ScalarType.Bool).triu(1), double.NegativeInfinity);
            heads.Add(scores.softmax(-1).matmul(v));
        }
        return cat(heads, -1).matmul(wo.t()).to(x.dtype); // [B, T, hidden]
    }

    /// <summary>cos/sin [T, D/2] of angle t · theta^(-2i/D), computed in double on the host.</summary>
    private static (Tensor Cos, Tensor Sin) RopeTables(long tokens, int headDim, double theta)
    {
        int half = headDim / 2;
        var c = new double[tokens * half];
        var s = new double[tokens * half];
        for (long pos = 0; pos < tokens; pos++)
            for (int i = 0; i < half; i++)
            {
                double angle = pos / Math.Pow(theta, 2.0 * i / headDim);
                c[pos * half + i] = Math.Cos(angle);
                s[pos * half + i] = Math.Sin(angle);
            }
        return (tensor(c).view(tokens, half), tensor(s).view(tokens, half));
    }

    /// <summary>Rotates each pair (i, i + D/2) by its angle: HF's rotate-half layout.</summary>
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var first = x.narrow(-1, 0, half);
        var second = x.narrow(-1, half, half);
        return cat([first * cos - second * sin, second * cos + first * sin], -1);
    }
}
