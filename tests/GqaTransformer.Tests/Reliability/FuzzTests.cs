using System.Diagnostics;
using System.Text;
using CsCheck;
using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// The readers of untrusted files, fed mutated copies of valid files (flipped, inserted and deleted bytes, truncations,
/// duplicated chunks, forged sizes) through CsCheck: every input must end in the reader's own named exception, or load,
/// within a bounded time. Anything else (a NullReferenceException, an IndexOutOfRangeException, an allocation the file
/// claims, a hang) fails, and CsCheck prints the smallest input that does it. GQA_FUZZ_ITERATIONS sets the count per
/// reader (default 3,000 here; .ci/run runs a long pass, docs/reliability.md says how many).
/// </summary>
public class FuzzTests
{
    private static readonly long Iterations = long.TryParse(Environment.GetEnvironmentVariable("GQA_FUZZ_ITERATIONS"), out long n) ? n : 3_000;
    private static readonly TimeSpan Slowest = TimeSpan.FromSeconds(10);

    /// <summary>Runs <paramref name="read"/> on mutants of <paramref name="seeds"/>; only <paramref name="allowed"/> exceptions may escape it.</summary>
    private static void Fuzz(byte[][] seeds, Action<byte[]> read, params Type[] allowed) => Fuzz(Iterations, seeds, read, allowed);

    private static void Fuzz(long iterations, byte[][] seeds, Action<byte[]> read, params Type[] allowed)
    {
        var gen = Gen.Select(Gen.Int[0, seeds.Length - 1], Gen.Int[0, 6], Gen.Int.Array[36], (seed, count, dice) => Mutate(seeds[seed], count, dice));
        gen.Sample(bytes =>
        {
            var clock = Stopwatch.StartNew();
            try
            {
                read(bytes);
            }
            catch (Exception e) when (allowed.Any(t => t.IsInstanceOfType(e)))
            {
                // a named refusal: what the reader promises
            }
            if (clock.Elapsed > Slowest) throw new TimeoutException($"one input took {clock.Elapsed.TotalSeconds:0.0} s");
        }, iter: iterations, threads: -1, seed: Environment.GetEnvironmentVariable("GQA_FUZZ_SEED"));
    }

    private static byte[] Mutate(byte[] seed, int count, int[] dice)
    {
        var bytes = new List<byte>(seed);
        for (int m = 0, d = 0; m < count && d + 5 < dice.Length; m++, d += 6)
        {
            int at = bytes.Count == 0 ? 0 : (int)((uint)dice[d + 1] % (uint)bytes.Count);
            switch ((uint)dice[d] % 7)
            {
                case 0: if (bytes.Count > 0) bytes[at] ^= (byte)(1 << (dice[d + 2] & 7)); break;               // flip a bit
                case 1: bytes.Insert(at, (byte)dice[d + 2]); break;                                           // insert a byte
                case 2: if (bytes.Count > 0) bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + (dice[d + 2] & 15))); break;
                case 3: bytes.RemoveRange(at, bytes.Count - at); break;                                       // truncate
                case 4: bytes.InsertRange(at, bytes.Skip(at).Take(1 + (dice[d + 2] & 63)).ToArray()); break; // duplicate a chunk
                case 5: if (bytes.Count > 0) bytes[at] = (byte)JsonCharacters[(int)((uint)dice[d + 2] % (uint)JsonCharacters.Length)]; break;
                case 6: if (bytes.Count >= 8) BitConverter.GetBytes((ulong)(uint)dice[d + 2] << (dice[d + 3] & 31)).CopyTo(CollectionsMarshalSpan(bytes)); break; // forge the size field
            }
        }
        return [.. bytes];
    }

    private const string JsonCharacters = "{}[]\":,0-9e.-tn";

    private static Span<byte> CollectionsMarshalSpan(List<byte> list) => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list);

    [Fact]
    public void Safetensors_files_load_or_are_refused_by_name()
    {
        byte[][] seeds = [Safetensors(("a", arange(6, ScalarType.Float32).view(2, 3)), ("b", ones(4, ScalarType.BFloat16))),
                          Safetensors(("x.weight", zeros(0, ScalarType.Int64)), ("y", tensor(new byte[] { 1, 2, 3 })))];
        Fuzz(seeds, bytes =>
        {
            using var scope = NewDisposeScope();
            using var file = SafetensorsFile.FromStream("fuzz.safetensors", new MemoryStream(bytes, writable: false));
            foreach (var name in file.Entries.Keys) file.Read(name);
        }, typeof(InvalidDataException));
    }

    [Fact]
    public void Config_json_parses_or_is_refused_by_name()
    {
        byte[][] seeds = [File.ReadAllBytes(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json")),
                          File.ReadAllBytes(Path.Combine(Fixtures.HfRef("llama_v5_headdim"), "config.json")),
                          File.ReadAllBytes(Path.Combine(Fixtures.HfRef("mistral_sliding"), "config.json"))];
        Fuzz(seeds, bytes => DecoderConfig.FromJson(Encoding.UTF8.GetString(bytes)), typeof(InvalidDataException), typeof(NotSupportedException));
    }

    [Fact]
    public void Safetensors_index_json_gives_a_weight_map_or_is_refused_by_name()
    {
        using var directory = new Fixtures.TempDirectory();
        byte[][] seeds = [File.ReadAllBytes(Path.Combine(Fixtures.HfRef("llama_sharded"), "model.safetensors.index.json"))];
        int cases = 0;
        // Each case writes and reads a file (about 0.6 ms): at most 100,000, about a minute.
        Fuzz(Math.Min(Iterations, 100_000), seeds, bytes =>
        {
            string path = Path.Combine(directory.Path, $"{Interlocked.Increment(ref cases)}.index.json");   // cases run on several threads
            File.WriteAllBytes(path, bytes);
            PretrainedCheckpoint.ReadWeightMap(path);
            File.Delete(path);
        }, typeof(InvalidDataException));
    }

    [Fact]
    public void Tokenizer_json_loads_and_encodes_or_is_refused_by_name()
    {
        byte[][] seeds = [File.ReadAllBytes(Path.Combine(Fixtures.Root, "chat-tiny", "tokenizer.json")), Encoding.UTF8.GetBytes(SentencePieceStyle)];
        Fuzz(seeds, bytes =>
        {
            var tokenizer = HfTokenizer.FromJson(Encoding.UTF8.GetString(bytes));
            var ids = tokenizer.Encode("Héllo <s> wörld 🤗\n  12", addSpecialTokens: true);
            tokenizer.Decode(ids, skipSpecialTokens: false);
        }, typeof(InvalidDataException), typeof(NotSupportedException), typeof(InvalidOperationException));
    }

    [Fact]
    public void Generation_config_json_parses_or_is_refused_by_name()
    {
        byte[][] seeds = [File.ReadAllBytes(Path.Combine(Fixtures.HfTiny("llama_gqa"), "generation_config.json")),
                          Encoding.UTF8.GetBytes("""{"do_sample": true, "eos_token_id": [128001, 128009], "temperature": 0.6, "top_p": 0.9}""")];
        Fuzz(seeds, bytes => GenerationConfig.FromJson(Encoding.UTF8.GetString(bytes)).ToOptions().Validate(),
            typeof(InvalidDataException), typeof(ArgumentOutOfRangeException));
    }

    [Fact]
    public void Tokenizer_config_json_gives_a_template_or_is_refused_by_name()
    {
        byte[][] seeds = [File.ReadAllBytes(Path.Combine(Fixtures.Root, "chat-tiny", "tokenizer_config.json")),
                          Encoding.UTF8.GetBytes("""
                              {"added_tokens_decoder": {"128000": {"content": "<|begin_of_text|>", "special": true}},
                               "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "model_max_length": 131072,
                               "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"},
                                                 {"name": "tool_use", "template": "{{ tools | tojson }}"}]}
                              """)];
        Fuzz(seeds, bytes =>
        {
            var template = ChatTemplate.FromFiles(Encoding.UTF8.GetString(bytes), null, "fuzz/tokenizer_config.json", "fuzz");
            template.Render([("user", "hi")], addGenerationPrompt: true);
        }, typeof(InvalidDataException), typeof(ChatTemplateException));
    }

    [Fact]
    public void Chat_templates_render_or_fail_with_a_template_error()
    {
        string directory = Path.Combine(Fixtures.Root, "chat-templates");
        byte[][] seeds = Directory.GetFiles(directory, "*.jinja").Select(File.ReadAllBytes).ToArray();
        var messages = new List<object?>
        {
            new Dictionary<string, object?> { ["role"] = "system", ["content"] = "Be brief." },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi 🤗" },
        };
        Fuzz(seeds, bytes => ChatTemplate.Parse(Encoding.UTF8.GetString(bytes)).Render(new Dictionary<string, object?>
        {
            ["messages"] = messages, ["add_generation_prompt"] = true, ["bos_token"] = "<s>", ["eos_token"] = "</s>",
        }), typeof(ChatTemplateException));
    }

    [Fact]
    public void The_mutator_makes_inputs_the_readers_refuse_and_some_they_accept()
    {
        // A fuzzer whose mutants all fail at the first byte tests nothing: check that both outcomes occur.
        var seed = File.ReadAllBytes(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json"));
        int accepted = 0, refused = 0;
        Gen.Select(Gen.Int[0, 6], Gen.Int.Array[36], (count, dice) => Mutate(seed, count, dice)).Sample(bytes =>
        {
            try { DecoderConfig.FromJson(Encoding.UTF8.GetString(bytes)); Interlocked.Increment(ref accepted); }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException) { Interlocked.Increment(ref refused); }
        }, iter: 2_000, threads: 1, seed: "0N0XIzNsQ0O2");
        accepted.Should().BeGreaterThan(50);
        refused.Should().BeGreaterThan(200);
    }

    private const string SentencePieceStyle = """
        {"added_tokens": [{"id": 9, "content": "<s>", "special": true, "lstrip": true}],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, {"type": "NFC"}]},
         "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{N}"}, "behavior": "Isolated", "invert": false}, {"type": "Digits", "individual_digits": true}]},
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [9], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "fuse_unk": true,
                   "vocab": {"<unk>": 10, "▁": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "▁ab": 6, "<0xC3>": 7, "<0xA9>": 8},
                   "merges": ["a b", "b c", "▁ ab"]}}
        """;

    private static byte[] Safetensors(params (string Name, Tensor Value)[] tensors)
    {
        string path = Path.GetTempFileName();
        try
        {
            SafetensorsFile.Save(path, tensors.Select(t => KeyValuePair.Create(t.Name, t.Value)));
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
