using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// config.json and the safetensors files mutated against each other (issue 28): files that are each valid but
/// disagree (layer counts, widths, head counts, vocab, the tie flag against the tensors; a tensor dropped, renamed,
/// reshaped, relabelled, aliased onto another's bytes, or moved in the index). The only outcomes allowed are a load
/// whose every parameter equals the tensor the file holds under its name, or an <see cref="InvalidDataException"/> /
/// <see cref="NotSupportedException"/>; each case within a bounded time, the whole run within bounded memory.
/// GQA_FUZZ_ITERATIONS / 20 cases, at most 2,000 (150 by default; each builds a model, about 50 ms).
/// </summary>
public class CheckpointPairFuzzTests
{
    private static readonly long Iterations = Math.Clamp(
        (long.TryParse(Environment.GetEnvironmentVariable("GQA_FUZZ_ITERATIONS"), out long n) ? n : 3_000) / 20, 1, 2_000);
    private static readonly TimeSpan Slowest = TimeSpan.FromSeconds(10);

    private static readonly string[] Seeds = [Fixtures.HfTiny("llama_gqa"), Fixtures.HfTiny("llama_mqa"), Fixtures.HfRef("qwen2_bias"), Fixtures.HfRef("llama_sharded")];

    private static readonly string[] ConfigFields =
        ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "intermediate_size",
         "tie_word_embeddings", "attention_bias", "model_type"];

    /// <summary>One tensor of the checkpoint being made: its own bytes, or (aliased) another tensor's range.</summary>
    private sealed class Blob(string name, string dtype, long[] shape, byte[] bytes)
    {
        public string Name = name, Dtype = dtype;
        public long[] Shape = shape;
        public byte[] Bytes = bytes;
        public Blob? AliasOf;
        public int GapBefore;
    }

    private sealed class Checkpoint
    {
        public required JsonObject Config;
        public required List<(string File, List<Blob> Blobs)> Shards;
        public bool Indexed;
        public Dictionary<string, string>? IndexOverride;
        public int Trailing;
        public bool FormatInvalid;   // a gap, an alias or trailing bytes: the format refuses the file whatever the config says
    }

    [Fact]
    public void Config_and_weights_that_disagree_load_what_the_file_holds_or_are_refused_by_name()
    {
        using var process = Process.GetCurrentProcess();
        long peakBefore = process.PeakWorkingSet64;
        int loaded = 0, refused = 0;
        Gen.Select(Gen.Int[0, Seeds.Length - 1], Gen.Int[0, 2], Gen.Int[0, 2], Gen.Int.Array[32]).Sample((seed, configEdits, fileEdits, dice) =>
        {
            var checkpoint = Read(Seeds[seed]);
            int d = 0;
            int Die() => dice[d++ % dice.Length] & int.MaxValue;
            for (int i = 0; i < configEdits; i++) EditConfig(checkpoint.Config, Die);
            for (int i = 0; i < fileEdits; i++) EditFiles(checkpoint, Die);

            using var directory = new Fixtures.TempDirectory();
            Write(checkpoint, directory.Path);
            var clock = Stopwatch.StartNew();
            DecoderModel model;
            try
            {
                model = DecoderModel.FromPretrained(directory.Path);
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                Interlocked.Increment(ref refused);
                return;   // a named refusal
            }
            finally
            {
                if (clock.Elapsed > Slowest) throw new TimeoutException($"one checkpoint took {clock.Elapsed.TotalSeconds:0.0} s");
            }
            using (model)
            {
                if (checkpoint.FormatInvalid) throw new Exception("a file the safetensors format refuses (gap, overlap or trailing bytes) was loaded");
                CheckLoadedIsTheFile(model, checkpoint);
            }
            Interlocked.Increment(ref loaded);
        }, iter: Iterations, threads: -1, seed: Environment.GetEnvironmentVariable("GQA_FUZZ_SEED"));
        process.Refresh();
        long growth = process.PeakWorkingSet64 - peakBefore;
        if (growth > 2L << 30) throw new Exception($"the process's peak memory grew by {growth >> 20} MB: some case allocated what a file claimed");
        // a fuzzer whose cases all fail at the first check tests nothing: both outcomes must occur
        if (Iterations >= 100 && (loaded == 0 || refused == 0)) throw new Exception($"{loaded} cases loaded and {refused} were refused; both should occur");
    }

    /// <summary>Every parameter is the tensor the file holds under its name (its own bytes, never another's), and every tensor is used.</summary>
    private static void CheckLoadedIsTheFile(DecoderModel model, Checkpoint checkpoint)
    {
        using var scope = NewDisposeScope();
        var blobs = checkpoint.Shards.SelectMany(s => s.Blobs).ToDictionary(b => b.Name);
        var state = model.state_dict();
        foreach (var (name, parameter) in state)
        {
            if (!blobs.TryGetValue(name, out var blob)) throw new Exception($"'{name}' loaded, but no file holds it");
            using var own = SafetensorsFile.FromStream(name, new MemoryStream(Single(blob)));
            var value = own.Read(name, parameter.dtype);
            if (!value.shape.SequenceEqual(parameter.shape) || !parameter.eq(value).all().item<bool>()) throw new Exception($"'{name}' loaded other values than the file holds for it");
        }
        foreach (var name in blobs.Keys)
            if (!state.ContainsKey(name) && !(name == "lm_head.weight" && model.Config.TieWordEmbeddings))
                throw new Exception($"'{name}' is in the file but the loaded model has no such tensor");
    }

    private static void EditConfig(JsonObject config, Func<int> die)
    {
        string field = ConfigFields[die() % ConfigFields.Length];
        switch (field)
        {
            case "tie_word_embeddings" or "attention_bias":
                config[field] = !(config[field]?.GetValue<bool>() ?? false);
                break;
            case "model_type":
                config[field] = die() % 2 == 0 ? "qwen2" : "llama";
                config.Remove("architectures");
                break;
            default:
                long v = config[field]?.GetValue<long>() ?? 16;
                long[] choices = [0, 1, v - 1, v + 1, 2 * v, v / 2, 1 << 30, int.MaxValue, -1];
                config[field] = choices[die() % choices.Length];
                break;
        }
    }

    private static void EditFiles(Checkpoint checkpoint, Func<int> die)
    {
        var (_, blobs) = checkpoint.Shards[die() % checkpoint.Shards.Count];
        if (blobs.Count == 0) return;
        var blob = blobs[die() % blobs.Count];
        switch (die() % 10)
        {
            case 0: if (!blobs.Any(b => b.AliasOf == blob)) blobs.Remove(blob); break;
            case 1:
                string renamed = blob.Name.Contains("layers.0.") ? blob.Name.Replace("layers.0.", "layers.9.") : blob.Name + "_x";
                if (!checkpoint.Shards.Any(s => s.Blobs.Any(b => b.Name == renamed))) blob.Name = renamed;
                break;
            case 2: blob.Shape = blob.Shape.Length == 2 ? [blob.Shape[1], blob.Shape[0]] : [1, .. blob.Shape]; break;   // same bytes
            case 3:                                                                                                           // one column fewer
                long rows = blob.Shape.Length == 2 ? blob.Shape[0] : 1, columns = blob.Shape[^1];
                if (columns < 2 || blob.Shape.Length > 2 || blob.Dtype != "F32" || blob.Bytes.Length != rows * columns * 4) break;
                blob.Shape = blob.Shape.Length == 2 ? [rows, columns - 1] : [columns - 1];
                blob.Bytes = blob.Bytes[..(int)(rows * (columns - 1) * 4)];
                break;
            case 4: blob.Dtype = die() % 2 == 0 ? "I32" : "F16"; if (blob.Dtype == "F16") blob.Shape = [.. blob.Shape[..^1], blob.Shape[^1] * 2]; break;
            case 5:                                                                                                           // alias another's bytes
                var target = blobs.FirstOrDefault(b => b != blob && b.AliasOf is null && b.Bytes.Length == blob.Bytes.Length);
                if (target is null || blobs.Any(b => b.AliasOf == blob)) break;
                blob.AliasOf = target;
                checkpoint.FormatInvalid = true;
                break;
            case 6: blob.GapBefore = 1 + die() % 16; checkpoint.FormatInvalid = true; break;
            case 7: checkpoint.Trailing = 1 + die() % 16; checkpoint.FormatInvalid = true; break;
            case 8:                                                                                                           // one more layer, and the config says so
                long layers = checkpoint.Config["num_hidden_layers"]!.GetValue<long>();
                if (layers is < 1 or > 8 || checkpoint.Shards.Any(s => s.Blobs.Any(b => b.Name.StartsWith($"model.layers.{layers}.", StringComparison.Ordinal)))) break;
                var last = checkpoint.Shards.SelectMany(s => s.Blobs).Where(b => b.Name.StartsWith($"model.layers.{layers - 1}.", StringComparison.Ordinal)).ToList();
                blobs.AddRange(last.Select(b => new Blob(b.Name.Replace($"model.layers.{layers - 1}.", $"model.layers.{layers}."), b.Dtype, b.Shape, b.Bytes)));
                checkpoint.Config["num_hidden_layers"] = layers + 1;
                break;
            case 9:                                                                                                           // the index disagrees
                if (!checkpoint.Indexed) break;
                checkpoint.IndexOverride = IndexOf(checkpoint);
                if (die() % 2 == 0) checkpoint.IndexOverride.Remove(blob.Name);
                else checkpoint.IndexOverride[blob.Name] = checkpoint.Shards[die() % checkpoint.Shards.Count].File;
                break;
        }
    }

    private static Checkpoint Read(string directory)
    {
        var shards = new List<(string, List<Blob>)>();
        foreach (var name in PretrainedCheckpoint.WeightFileNames(directory).Order(StringComparer.Ordinal))
        {
            string path = Path.Combine(directory, name);
            byte[] raw = File.ReadAllBytes(path);
            using var file = SafetensorsFile.Open(path);
            shards.Add((name, file.Entries.Values.OrderBy(e => e.Offset)
                .Select(e => new Blob(e.Name, e.Dtype == ScalarType.Float32 ? "F32" : throw new NotSupportedException("seeds are F32"), e.Shape, raw[(int)e.Offset..(int)(e.Offset + e.Length)]))
                .ToList()));
        }
        return new Checkpoint
        {
            Config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "config.json")))!,
            Shards = shards,
            Indexed = File.Exists(Path.Combine(directory, PretrainedCheckpoint.IndexFile)),
        };
    }

    private static Dictionary<string, string> IndexOf(Checkpoint checkpoint)
        => checkpoint.Shards.SelectMany(s => s.Blobs.Select(b => (b.Name, s.File))).ToDictionary(p => p.Name, p => p.File);

    private static void Write(Checkpoint checkpoint, string directory)
    {
        File.WriteAllText(Path.Combine(directory, "config.json"), checkpoint.Config.ToJsonString());
        foreach (var (file, blobs) in checkpoint.Shards)
            File.WriteAllBytes(Path.Combine(directory, file), Safetensors(blobs, file == checkpoint.Shards[^1].File ? checkpoint.Trailing : 0));
        if (checkpoint.Indexed)
        {
            var map = new JsonObject();
            foreach (var (name, file) in checkpoint.IndexOverride ?? IndexOf(checkpoint)) map[name] = file;
            File.WriteAllText(Path.Combine(directory, PretrainedCheckpoint.IndexFile), new JsonObject { ["weight_map"] = map }.ToJsonString());
        }
    }

    /// <summary>A safetensors file of <paramref name="blobs"/>: each one's bytes in order (after its gap), or the range of the one it aliases.</summary>
    private static byte[] Safetensors(List<Blob> blobs, int trailing)
    {
        var data = new MemoryStream();
        var ranges = new Dictionary<Blob, (long Begin, long End)>();
        foreach (var blob in blobs.Where(b => b.AliasOf is null))
        {
            data.Write(new byte[blob.GapBefore]);
            long begin = data.Position;
            data.Write(blob.Bytes);
            ranges[blob] = (begin, data.Position);
        }
        data.Write(new byte[trailing]);
        var header = new JsonObject();
        foreach (var blob in blobs)
        {
            var (begin, end) = ranges[blob.AliasOf ?? blob];
            header[blob.Name] = new JsonObject
            {
                ["dtype"] = blob.Dtype, ["shape"] = new JsonArray([.. blob.Shape.Select(s => (JsonNode)s)]), ["data_offsets"] = new JsonArray(begin, end),
            };
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        return [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. data.ToArray()];
    }

    private static byte[] Single(Blob blob) => Safetensors([new Blob(blob.Name, blob.Dtype, blob.Shape, blob.Bytes)], 0);
}
