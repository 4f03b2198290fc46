using System.Globalization;
using System.Text;
using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class EvaluationTests
{
    /// <summary>Textbook cross-entropy in float64: −log softmax(logits[b, t])[labels[b, t + 1]], averaged over non-ignored targets.</summary>
    private static double Textbook(Tensor logits, long[,] labels)
    {
        var values = logits.to(ScalarType.Float64).data<double>().ToArray();
        int b = labels.GetLength(0), t = labels.GetLength(1), v = (int)logits.size(2);
        double sum = 0;
        int count = 0;
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t - 1; j++)
            {
                long target = labels[i, j + 1];
                if (target == CausalLmLoss.IgnoreIndex) continue;
                int row = (i * t + j) * v;
                double max = Enumerable.Range(0, v).Max(k => values[row + k]);
                double logSum = Math.Log(Enumerable.Range(0, v).Sum(k => Math.Exp(values[row + k] - max))) + max;
                sum += logSum - values[row + (int)target];
                count++;
            }
        return sum / count;
    }

    [Fact]
    public void The_loss_is_the_textbook_shifted_cross_entropy_and_ignores_padding()
    {
        using var scope = NewDisposeScope();
        var logits = randn(2, 5, 7) * 3;
        long[,] labels = { { 1, 2, 3, 4, 5 }, { 6, 0, CausalLmLoss.IgnoreIndex, CausalLmLoss.IgnoreIndex, 2 } };
        var flat = tensor(labels.Cast<long>().ToArray()).view(2, 5);
        CausalLmLoss.Compute(logits, flat).item<float>().Should().BeApproximately((float)Textbook(logits, labels), 1e-5f);
        CausalLmLoss.Compute(logits.to(ScalarType.BFloat16), flat).dtype.Should().Be(ScalarType.Float32);
        FluentActions.Invoking(() => CausalLmLoss.Compute(logits, flat.narrow(1, 0, 4))).Should().Throw<ArgumentException>().WithParameterName("labels");
    }

    [Fact]
    public void Text_streams_as_bytes_or_tokens_and_packs_into_fixed_sequences()
    {
        using var directory = new Fixtures.TempDirectory();
        string file = Path.Combine(directory.Path, "a.txt");
        File.WriteAllText(file, "héllo\nworld\n");
        var bytes = TextTokens.Read(file).ToArray();
        bytes.Should().Equal(Encoding.UTF8.GetBytes("héllo\nworld\n").Select(b => (int)b));
        var packed = TextTokens.Pack(bytes, 4).ToList();
        packed.Should().HaveCount(bytes.Length / 4).And.OnlyContain(s => s.Length == 4);
        packed.SelectMany(s => s).Should().Equal(bytes.Take(packed.Count * 4).Select(b => (long)b));
        File.WriteAllText(Path.Combine(directory.Path, "b.txt"), "!\n");
        TextTokens.Read(directory.Path).Should().HaveCount(bytes.Length + 2, "a folder is its .txt files in name order");
        FluentActions.Invoking(() => TextTokens.Pack(bytes, 1)).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("length");
        FluentActions.Invoking(() => TextTokens.Read(Path.Combine(directory.Path, "none.txt"))).Should().Throw<FileNotFoundException>();
    }

    [Fact]
    public void Evaluation_equals_the_textbook_loss_of_the_models_own_logits()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var sequences = Enumerable.Range(0, 3).Select(i => Enumerable.Range(0, 9).Select(j => (long)((i * 31 + j * 7) % 256)).ToArray()).ToList();
        var result = Evaluation.Evaluate(model, sequences, batchSize: 2);
        result.Tokens.Should().Be(3 * 8);
        var ids = tensor(sequences.SelectMany(s => s).ToArray()).view(3, 9);
        var labels = new long[3, 9];
        for (int i = 0; i < 3; i++) for (int j = 0; j < 9; j++) labels[i, j] = sequences[i][j];
        result.Loss.Should().BeApproximately(Textbook(model.forward(ids), labels), 1e-5);
        result.Perplexity.Should().BeApproximately(Math.Exp(result.Loss), 1e-9);
    }
}
