// Usage: ManualCache MODEL_DIR      (a checkpoint directory: config.json and *.safetensors)
// Wrong arguments print this usage to standard error and exit 2; so does a model directory that cannot be loaded.
//
// Drives a KvCache by hand: size it, prefill a prompt, decode token by token, then reuse the cache for a second prompt.
//   dotnet run --project samples/ManualCache -- MODEL_DIR
using GqaTransformer;
using static TorchSharp.torch;

if (args.Length != 1 || args[0].StartsWith("--", StringComparison.Ordinal)) return Fail("usage: ManualCache MODEL_DIR");
string directory = args[0];
if (!Directory.Exists(directory)) return Fail($"error: '{directory}' is not a directory; expected a checkpoint directory (config.json and *.safetensors).");
using var model = Load(directory);
if (model is null) return 2;
var config = model.Config;
if (config.VocabSize <= 21) return Fail($"error: this sample's prompt uses token ids up to 21, but the model's vocabulary has {config.VocabSize}.");

// Size before allocating: the cache grows with kv heads, never with query heads.
long bytes = KvCache.EstimateBytes(config, batchSize: 1, tokens: 64, ScalarType.Float32);
Console.WriteLine($"{config.NumAttentionHeads} query heads share {config.NumKeyValueHeads} kv heads: 64 tokens of cache take {bytes} bytes");

using var cache = model.CreateCache(batchSize: 1, capacity: 64);   // preallocated once, written in place
long[] prompt = [5, 9, 13, 21];
var generated = new List<long>();
using (NewDisposeScope())                                          // every tensor made in here is freed at its end
{
    var logits = model.forward(tensor(prompt).view(1, -1), cache, lastTokenOnly: true); // prefill: [1, 1, vocab]
    for (int step = 0; step < 8; step++)
    {
        var next = logits.argmax(-1);                              // [1, 1], greedy
        generated.Add(next.item<long>());
        logits = model.forward(next, cache);                       // decode: one token, reads the whole cache
    }
}
Console.WriteLine($"prompt [{string.Join(",", prompt)}] -> [{string.Join(",", generated)}], cache holds {cache.Length} of {cache.Capacity} tokens");

// The same cache serves the next sequence after a Reset: no reallocation.
cache.Reset();
using (NewDisposeScope())
{
    model.forward(tensor(prompt).view(1, -1), cache, lastTokenOnly: true);
}
Console.WriteLine($"after Reset and the prompt again: {cache.Length} tokens cached");

// The library's generator gives the same tokens.
var expected = new TokenGenerator(model).Generate(prompt.Select(t => (int)t).ToArray(),
    new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] });
bool same = expected.SequenceEqual(generated.Select(t => (int)t));
Console.WriteLine(same ? "same tokens as TokenGenerator: ok" : "tokens differ from TokenGenerator: WRONG");
return same && cache.Length == prompt.Length ? 0 : 1;

// A checkpoint that is missing, incomplete or corrupt is one line on standard error, not a stack trace.
static DecoderModel? Load(string directory)
{
    try
    {
        return DecoderModel.FromPretrained(directory);
    }
    catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException)
    {
        Fail($"error: cannot load '{directory}': {e.Message}");
        return null;
    }
}

// The usage or an error on standard error, exit code 2: the arguments were wrong.
static int Fail(string message)
{
    Console.Error.WriteLine(message);
    return 2;
}
