using GqaTransformer;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Reference checkpoints and outputs written by HuggingFace transformers (see TestData/*/README.md).</summary>
internal static class Fixtures
{
    /// <summary>
    /// The project's TestData folder in the source tree (recorded at build), so that fixtures fetched after a build are
    /// seen by <c>dotnet test --no-build</c>.
    /// </summary>
    public static string Root { get; } = typeof(Fixtures).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
        .OfType<System.Reflection.AssemblyMetadataAttribute>()
        .Single(a => a.Key == "TestDataRoot").Value!;

    public static string HfTiny(string name) => Path.Combine(Root, "hf-tiny", name);

    /// <summary>References made by tools/make_fixtures.py with transformers 5.17 / torch 2.11.</summary>
    public static string HfRef(string name) => Path.Combine(Root, "hf-ref", name);

    /// <summary>Reads every tensor of an expected-outputs file.</summary>
    public static Dictionary<string, Tensor> Expected(string directory, string file = "expected.safetensors")
    {
        using var reader = SafetensorsFile.Open(Path.Combine(directory, file));
        return reader.Entries.Keys.ToDictionary(k => k, k => reader.Read(k));
    }

    /// <summary>
    /// Greedy decoding driven by hand through <see cref="DecoderModel.forward(Tensor, KvCache?, Tensor?, Tensor?, bool)"/>
    /// and a <see cref="KvCache"/> (no generator involved): the prompt [1, P] once, then one token per step, until
    /// <paramref name="totalTokens"/> tokens (prompt included). Returns every token.
    /// </summary>
    public static long[] GreedyWithCache(DecoderModel model, Tensor prompt, int totalTokens)
    {
        using var scope = NewDisposeScope();
        using var cache = model.CreateCache(1, totalTokens);
        var tokens = new List<long>(prompt.data<long>().ToArray());
        var next = model.forward(prompt, cache, lastTokenOnly: true).argmax(-1); // [1, 1]
        while (tokens.Count < totalTokens)
        {
            tokens.Add(next.item<long>());
            if (tokens.Count < totalTokens) next = model.forward(next, cache).argmax(-1);
        }
        return tokens.ToArray();
    }

    /// <summary>A scratch directory removed at dispose.</summary>
    public sealed class TempDirectory : IDisposable
    {
        public TempDirectory() => Directory.CreateDirectory(Path);

        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "gqa-tests-" + Guid.NewGuid().ToString("N"));

        public void Dispose()
        {
            if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
        }
    }
}
