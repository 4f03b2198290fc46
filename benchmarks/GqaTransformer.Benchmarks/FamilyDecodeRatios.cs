using System.Diagnostics;
using GqaTransformer;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// <c>family-decode [ROUNDS]</c>: the models of <see cref="FamilyDecodeBenchmarks"/> side by side in one process, one
/// decode step of each per round in a rotating order, so that the machine's drift hits every family alike; prints each
/// family's median step and the median over rounds of its step over Llama's in the same round.
/// </summary>
internal static class FamilyDecodeRatios
{
    public static int Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0]) : 200;
        var families = new[] { "llama", "qwen3", "gemma2", "gemma3_text", "phi3", "smollm3", "olmo2" };
        var benches = families.Select(f => { var b = new FamilyDecodeBenchmarks { ModelType = f, Context = 1024 }; b.Setup(); return b; }).ToArray();
        var times = families.Select(_ => new List<double>()).ToArray();
        for (int warm = 0; warm < 10; warm++) foreach (var b in benches) b.Step();
        var watch = new Stopwatch();
        for (int round = 0; round < rounds; round++)
            for (int k = 0; k < benches.Length; k++)
            {
                int i = (k + round) % benches.Length;
                watch.Restart();
                benches[i].Step();
                times[i].Add(watch.Elapsed.TotalMilliseconds);
            }
        Console.WriteLine($"{rounds} rounds, 8 layers, hidden 1024, 16/4 heads x 64, MLP 2816, vocab 32000, bf16, 1024 cached tokens, {Environment.ProcessorCount} cores");
        Console.WriteLine("| family | median step (ms) | median ratio to Llama in the same round |");
        Console.WriteLine("|---|---:|---:|");
        for (int i = 0; i < families.Length; i++)
        {
            var ratios = times[i].Zip(times[0], (t, llama) => t / llama).Order().ToList();
            Console.WriteLine($"| {families[i]} | {Median(times[i]):F2} | {ratios[ratios.Count / 2]:F3} |");
        }
        foreach (var b in benches) b.Cleanup();
        return 0;
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
