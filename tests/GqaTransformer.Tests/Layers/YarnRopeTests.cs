using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>YaRN RoPE (Qwen3 and Qwen2.5 past their native context, DeepSeek) as transformers' _compute_yarn_parameters computes it.</summary>
public class YarnRopeTests
{
    private const string Qwen3Yarn = """
        {"model_type": "qwen3", "hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 128,
         "intermediate_size": 512, "num_hidden_layers": 2, "vocab_size": 100, "max_position_embeddings": 131072,
         "rope_theta": 1000000.0, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
        """;

    [Fact]
    public void Frequencies_and_attention_factor_follow_transformers_formula()
    {
        using var scope = NewDisposeScope();
        var config = DecoderConfig.FromJson(Qwen3Yarn);
        using var model = new DecoderModel(config);
        var rotary = model.RotaryTables.Single();

        // transformers' _compute_yarn_parameters, written out in float64
        int dim = 128;
        double theta = 1e6, factor = 4, original = 32768;
        double CorrectionDim(double rotations) => dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(Math.Floor(CorrectionDim(32)), 0), high = Math.Min(Math.Ceiling(CorrectionDim(1)), dim - 1);
        for (int i = 0; i < dim / 2; i++)
        {
            double power = Math.Pow(theta, 2.0 * i / dim);
            double extrapolationShare = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
            double expected = 1 / (factor * power) * (1 - extrapolationShare) + 1 / power * extrapolationShare;
            ((double)rotary.InverseFrequencies[i]).Should().BeApproximately(expected, 1e-6 * expected + 1e-12, $"pair {i}");
        }
        var (cos, _) = rotary.forward(zeros(1, 1, ScalarType.Int64), ScalarType.Float32);
        cos[0, 0, 0].item<float>().Should().BeApproximately((float)(0.1 * Math.Log(4) + 1), 1e-6f, "cos(0) carries the attention factor");
    }

    [Fact]
    public void Without_a_factor_yarn_takes_the_context_ratio_and_bad_values_are_refused()
    {
        var ratio = DecoderConfig.FromJson(Qwen3Yarn.Replace("\"factor\": 4.0, ", ""));
        using var model = new DecoderModel(ratio);
        using var scope = NewDisposeScope();
        var (cos, _) = model.RotaryTables.Single().forward(zeros(1, 1, ScalarType.Int64), ScalarType.Float32);
        cos[0, 0, 0].item<float>().Should().BeApproximately((float)(0.1 * Math.Log(131072.0 / 32768) + 1), 1e-6f);
        FluentActions.Invoking(() => DecoderConfig.FromJson(Qwen3Yarn.Replace("\"factor\": 4.0", "\"factor\": -1")))
            .Should().Throw<InvalidDataException>().WithMessage("*rope_scaling.factor must be a positive number*");
    }
}
