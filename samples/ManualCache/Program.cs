// Drives a KvCache by hand: size it, prefill a prompt, decode token by token, then reuse the cache for a second prompt.
//   dotnet run --project samples/ManualCache -- MODEL_DIR
using GqaTransformer;
using static TorchSharp.torch;

string directory = args.Length > 0 ? args[0] : throw new ArgumentException("usage: ManualCache MODEL_DIR");
using var model = DecoderModel.FromPretrained(directory);
var config = model.Config;

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
