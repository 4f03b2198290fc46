using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class MultiHeadAttentionTests
{
    [Theory]
    [InlineData(1, 5, 32, 4, true)]
    [InlineData(2, 7, 64, 8, true)]
    [InlineData(3, 16, 48, 6, true)]
    [InlineData(2, 7, 64, 8, false)]
    [InlineData(1, 1, 32, 2, true)]
    [InlineData(2, 9, 96, 3, false)]
    public void Mha_equals_textbook_multi_head_attention(int batch, int tokens, int hidden, int heads, bool causal)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        using var attention = new MultiHeadAttention(hiddenSize: hidden, numHeads: heads, numKvHeads: heads);
        var x = randn(batch, tokens, hidden);
        var actual = attention.forward(x, causal);
        var expected = TextbookAttention.Compute(attention.state_dict(), x, heads, heads, hidden / heads, causal);
        actual.shape.Should().Equal(batch, tokens, hidden);
        Tiny.MaxAbsDiff(actual, expected).Should().BeLessThan(1e-5);
    }

    [Theory]
    [InlineData(8, 2, true)]
    [InlineData(8, 1, false)]
    [InlineData(6, 3, true)]
    public void Gqa_equals_textbook_grouped_attention(int heads, int kvHeads, bool causal)
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        using var attention = new MultiHeadAttention(hiddenSize: 48, numHeads: heads, numKvHeads: kvHeads);
        var x = randn(2, 10, 48);
        var expected = TextbookAttention.Compute(attention.state_dict(), x, heads, kvHeads, 48 / heads, causal);
        Tiny.MaxAbsDiff(attention.forward(x, causal), expected).Should().BeLessThan(1e-5);
    }

    [Theory]
    [InlineData(2)] // heads / 2
    [InlineData(4)] // heads / 4
    [InlineData(8)] // MQA: one KV head
    public void Gqa_equals_mha_whose_kv_weights_repeat_each_group(int groupSize)
    {
        using var scope = NewDisposeScope();
        const int heads = 8, hidden = 64, headDim = 8;
        int kvHeads = heads / groupSize;
        manual_seed(13);
        using var gqa = new MultiHeadAttention(hidden, heads, kvHeads);
        using var mha = new MultiHeadAttention(hidden, heads, heads);
        LoadRepeated(gqa, mha, groupSize, headDim);

        var x = randn(2, 11, hidden);
        Tiny.MaxAbsDiff(gqa.forward(x), mha.forward(x)).Should().BeLessThan(1e-5, "prefill, causal");
        Tiny.MaxAbsDiff(gqa.forward(x, causal: false), mha.forward(x, causal: false)).Should().BeLessThan(1e-5, "no mask");

        // And through a cache: prefill 6 tokens, then decode one at a time.
        var config = Tiny.Config(heads, kvHeads, hidden, headDim, layers: 1);
        var mhaConfig = config with { NumKeyValueHeads = heads };
        using var gqaCache = new KvCache(config, 2, 16);
        using var mhaCache = new KvCache(mhaConfig, 2, 16);
        foreach (var (start, length) in new[] { (0, 6), (6, 1), (7, 1), (8, 3) })
        {
            var chunk = x.narrow(1, start, length);
            var positions = arange(start, start + length).unsqueeze(0).expand(2, -1);
            using var rope = new RotaryEmbedding(headDim);
            var (cos, sin) = rope.forward(positions, ScalarType.Float32);
            var fromGqa = gqa.forward(chunk, cos, sin, null, gqaCache);
            var fromMha = mha.forward(chunk, cos, sin, null, mhaCache);
            gqaCache.Advance(length);
            mhaCache.Advance(length);
            Tiny.MaxAbsDiff(fromGqa, fromMha).Should().BeLessThan(1e-5, $"cached chunk at {start}");
        }
    }

    [Fact]
    public void Grouped_attention_reads_kv_in_place_without_copying_it_per_query_head()
    {
        // A KV cache view that is not contiguous in the head/batch dimensions must go into attention as it is:
        // the result equals attention over an explicitly repeated copy.
        using var scope = NewDisposeScope();
        manual_seed(14);
        var q = randn(2, 8, 3, 16);
        var storage = randn(2, 2, 32, 16);
        var k = storage.narrow(2, 0, 20);
        var v = randn(2, 2, 32, 16).narrow(2, 0, 20);
        var grouped = MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, causal: true);
        var repeated = MultiHeadAttention.GroupedScaledDotProduct(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), null, causal: true);
        Tiny.MaxAbsDiff(grouped, repeated).Should().BeLessThan(1e-6);
    }

    [Theory]
    [InlineData(8, 2, false)]
    [InlineData(8, 1, true)]
    [InlineData(8, 8, true)]
    public void Decode_path_equals_attention_over_repeated_kv_with_and_without_a_padding_mask(int heads, int kvHeads, bool masked)
    {
        // One query token over a cache view, against SDPA over an explicit repeated copy of K/V.
        // A padding mask knocks out some keys of one sequence.
        using var scope = NewDisposeScope();
        manual_seed(15);
        var q = randn(2, heads, 1, 16);
        var k = randn(2, kvHeads, 40, 16).narrow(2, 0, 33);
        var v = randn(2, kvHeads, 40, 16).narrow(2, 0, 33);
        Tensor? mask = null;
        if (masked)
        {
            mask = ones([2, 1, 1, 33], ScalarType.Bool);
            foreach (long key in new long[] { 0, 5, 9 }) mask[1, 0, 0, key] = tensor(false);
        }
        var grouped = MultiHeadAttention.GroupedScaledDotProduct(q, k, v, mask, causal: true);
        int group = heads / kvHeads;
        var reference = nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), mask);
        grouped.shape.Should().Equal(2, heads, 1, 16);
        Tiny.MaxAbsDiff(grouped, reference).Should().BeLessThan(1e-5);
        if (masked) Tiny.MaxAbsDiff(grouped, MultiHeadAttention.GroupedScaledDotProduct(q, k, v, null, true)).Should().BeGreaterThan(1e-4, "the mask matters");
    }

    [Theory]
    [InlineData(2, 8, 2, 37, 16, ScalarType.Float32)]      // G = 4, a partial key block
    [InlineData(1, 4, 1, 1000, 128, ScalarType.Float32)]   // one KV head split over key ranges
    [InlineData(3, 8, 8, 5, 8, ScalarType.Float32)]        // MHA, fewer keys than ranges
    [InlineData(1, 32, 8, 300, 128, ScalarType.Float32)]   // Llama-3 shape: G = 4, D = 128
    [InlineData(2, 32, 4, 70, 64, ScalarType.Float32)]     // G = 8
    [InlineData(1, 32, 1, 129, 128, ScalarType.Float32)]   // MQA: G = 32, several query tiles
    [InlineData(2, 6, 2, 45, 24, ScalarType.Float32)]      // G = 3 (padded to 8), D not a multiple of 32
    [InlineData(3, 4, 2, 33, 32, ScalarType.Float32)]      // G = 2, odd key count: the last key is paired with zeros
    [InlineData(2, 16, 4, 200, 64, ScalarType.BFloat16)]   // half-precision caches are widened block by block
    [InlineData(2, 16, 4, 200, 64, ScalarType.Float16)]
    [InlineData(1, 4, 4, 77, 64, ScalarType.BFloat16)]     // MHA from bf16
    [InlineData(2, 8, 2, 37, 8, ScalarType.BFloat16)]      // a block of 37 × 8 values: the widening ends on a half vector
    [InlineData(2, 8, 8, 5, 8, ScalarType.Float16)]
    [InlineData(1, 16, 1, 90, 64, ScalarType.Float32)]     // G = 16: one full 512-bit score vector
    [InlineData(2, 24, 1, 40, 32, ScalarType.Float32)]     // G = 24: two score vectors, padded to 32
    [InlineData(1, 12, 2, 66, 40, ScalarType.Float32)]     // G = 6 in a group of 8, D = 40
    [InlineData(1, 10, 2, 35, 8, ScalarType.BFloat16)]     // G = 5, D = 8: four steps of two coordinates
    [InlineData(2, 4, 2, 50, 8, ScalarType.Float32)]       // G = 2, D = 8: a single step of eight coordinates
    [InlineData(1, 8, 2, 131, 96, ScalarType.Float32)]     // D = 96: a 64-wide value tile and a 32-wide one
    [InlineData(1, 32, 8, 300, 128, ScalarType.BFloat16)]  // Llama-3 shape from bf16: K and V read in place as even/odd lanes
    [InlineData(2, 6, 2, 45, 32, ScalarType.BFloat16)]     // G = 3 in place: the fourth query lane is empty
    [InlineData(1, 8, 2, 70, 40, ScalarType.BFloat16)]     // D = 40: K read in place, V widened (not a multiple of 32)
    [InlineData(1, 32, 8, 300, 128, ScalarType.Float16)]   // Llama-3 shape from fp16: K and V read in place, re-based by 2^112
    [InlineData(2, 32, 4, 100, 128, ScalarType.BFloat16)]  // G = 8: keys widened, values read in place
    [InlineData(1, 32, 4, 77, 64, ScalarType.Float16)]     // G = 8 from fp16: values in place, weights scaled by 2^112
    [InlineData(1, 32, 1, 129, 128, ScalarType.BFloat16)]  // MQA from bf16: four query tiles, values in place
    [InlineData(1, 10, 2, 35, 32, ScalarType.Float16)]     // G = 5 (padded to 8): the in-place outputs of the empty rows too
    public void Fused_cpu_decode_kernel_equals_textbook_attention(int batch, int heads, int kvHeads, int keys, int headDim, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(16);
        int group = heads / kvHeads;
        var q = randn(batch, kvHeads, group, headDim).to(dtype);
        var k = randn(batch, kvHeads, keys + 7, headDim).to(dtype).narrow(2, 0, keys); // a cache view
        var v = randn(batch, kvHeads, keys + 7, headDim).to(dtype).narrow(2, 0, keys);
        FusedCpuDecode.Supports(q, k, v, null).Should().BeTrue();
        var q64 = q.to(ScalarType.Float64);
        var textbook = (q64.matmul(k.to(ScalarType.Float64).transpose(2, 3)) / Math.Sqrt(headDim)).softmax(-1).matmul(v.to(ScalarType.Float64));
        // Both score forms of the grouped kernel: the 256-bit transposed one (any x86 with AVX2), and the 512-bit lane
        // groups where the CPU has AVX-512 (this project's CI machines and the GPU machine do).
        foreach (bool wide in FusedCpuDecode.WideScores ? new[] { false, true } : [false])
        {
            var fused = FusedCpuDecode.Run(q, k, v, null, wide);
            fused.shape.Should().Equal(batch, kvHeads, group, headDim);
            fused.dtype.Should().Be(dtype);
            // float32 arithmetic throughout; half-precision inputs add only the rounding of the output.
            Tiny.MaxAbsDiff(fused, textbook).Should().BeLessThan(dtype == ScalarType.Float32 ? 1e-5 : dtype == ScalarType.BFloat16 ? 1e-2 : 2e-3, $"wide scores: {wide}");
        }
        FusedCpuDecode.Supports(q, k, v, ones([batch, 1, 1, keys], ScalarType.Bool)).Should().BeFalse("masks take the matmul path");
        FusedCpuDecode.Supports(q.to(ScalarType.Float64), k.to(ScalarType.Float64), v.to(ScalarType.Float64), null).Should().BeFalse("float64 takes the matmul path");
    }

    [Theory]
    [InlineData(ScalarType.Float16, ScalarType.BFloat16, ScalarType.Float16)]   // fp16 model over a bf16 cache
    [InlineData(ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float32)]   // fp32 model over a bf16 cache
    [InlineData(ScalarType.BFloat16, ScalarType.Float32, ScalarType.BFloat16)]  // bf16 model over an fp32 cache
    [InlineData(ScalarType.Float16, ScalarType.Float16, ScalarType.Float32)]
    public void Fused_cpu_decode_kernel_reads_queries_and_writes_outputs_in_their_own_dtypes(ScalarType queryDtype, ScalarType cacheDtype, ScalarType outputDtype)
    {
        // The queries are read in the model's dtype (no rounding to the cache's) and the output is written in the one asked for.
        using var scope = NewDisposeScope();
        manual_seed(17);
        var q = randn(2, 4, 4, 64).to(queryDtype);                                  // G = 4
        var k = randn(2, 4, 90, 64).to(cacheDtype).narrow(2, 0, 83);
        var v = randn(2, 4, 90, 64).to(cacheDtype).narrow(2, 0, 83);
        FusedCpuDecode.Supports(q, k, v, null).Should().BeTrue();
        var fused = FusedCpuDecode.Run(q, k, v, outputDtype);
        fused.dtype.Should().Be(outputDtype);
        var q64 = q.to(ScalarType.Float64);
        var textbook = (q64.matmul(k.to(ScalarType.Float64).transpose(2, 3)) / 8.0).softmax(-1).matmul(v.to(ScalarType.Float64));
        double tolerance = outputDtype == ScalarType.Float32 ? 1e-5 : outputDtype == ScalarType.BFloat16 ? 1e-2 : 2e-3;
        Tiny.MaxAbsDiff(fused, textbook).Should().BeLessThan(tolerance);
        FluentActions.Invoking(() => FusedCpuDecode.Run(q, k, v, ScalarType.Float64)).Should().Throw<ArgumentException>().WithParameterName("outputDtype");
    }

    [Theory]
    [InlineData("values")]      // +∞ and NaN in V: the in-place split would read them as finite numbers
    [InlineData("keys")]        // ±∞ and NaN in K
    [InlineData("subnormal")]   // float16 subnormals in K and V, which the split maps exactly
    [InlineData("large query")] // |q|/√D beyond 65504: the 2^112 scale would overflow, so the cache is widened
    [InlineData("values", 8)]   // G = 8: keys widened, values read in place
    [InlineData("subnormal", 8)]
    public void Fused_cpu_decode_kernel_reads_float16_specials_and_extremes_as_textbook_attention(string kind, int group = 4)
    {
        using var scope = NewDisposeScope();
        manual_seed(18);
        var q = randn(1, 2, group, 64);                                             // G = 4: the quads form, fp16 read in place
        var k = randn(1, 2, 70, 64);
        var v = randn(1, 2, 70, 64);
        switch (kind)
        {
            case "values":
                v[0, 0, 5, 3] = tensor(double.PositiveInfinity);
                v[0, 1, 40, 10] = tensor(double.NaN);
                break;
            case "keys":
                k[0, 0, 7, 2] = tensor(double.PositiveInfinity);
                k[0, 1, 60, 0] = tensor(double.NaN);
                break;
            case "subnormal":
                k.narrow(3, 0, 16).mul_(1e-4);
                v.narrow(3, 32, 16).mul_(1e-5);
                break;
            default:
                q.mul_(2e6);
                break;
        }
        k = k.to(ScalarType.Float16);
        v = v.to(ScalarType.Float16);
        FusedCpuDecode.Supports(q, k, v, null).Should().BeTrue();
        var textbook = (q.to(ScalarType.Float64).matmul(k.to(ScalarType.Float64).transpose(2, 3)) / 8.0).softmax(-1).matmul(v.to(ScalarType.Float64));
        foreach (bool wide in FusedCpuDecode.WideScores ? new[] { false, true } : [false])
        {
            var fused = FusedCpuDecode.Run(q, k, v, ScalarType.Float32, wide).to(ScalarType.Float64);
            fused.isclose(textbook, 1e-4, 1e-4, true).all().item<bool>().Should().BeTrue($"{kind}, wide scores: {wide}");
        }
        if (kind is "values" or "keys") textbook.isnan().any().item<bool>().Should().BeTrue("the case has NaNs to compare");
    }

    internal static void LoadRepeated(MultiHeadAttention gqa, MultiHeadAttention mha, int groupSize, int headDim)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var source = gqa.state_dict();
        var target = mha.state_dict();
        target["q_proj.weight"].copy_(source["q_proj.weight"]);
        target["o_proj.weight"].copy_(source["o_proj.weight"]);
        foreach (var name in new[] { "k_proj.weight", "v_proj.weight" })
        {
            var w = source[name];                                     // [Hkv·D, hidden]
            var perHead = w.view(-1, headDim, w.shape[1]);            // [Hkv, D, hidden]
            target[name].copy_(perHead.repeat_interleave(groupSize, 0).reshape(-1, w.shape[1]));
        }
    }
}
