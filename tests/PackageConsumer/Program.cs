// Uses the GqaTransformer NuGet package the way the README's quick start does.
using GqaTransformer;
using static TorchSharp.torch;

string checkpoint = args.Length > 0 ? args[0] : throw new ArgumentException("usage: PackageConsumer CHECKPOINT_DIR");
using var model = DecoderModel.FromPretrained(checkpoint);
using var generator = new TokenGenerator(model);
IReadOnlyList<int> tokens = generator.Generate([5, 9, 13], new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] });

using var cache = model.CreateCache(batchSize: 1, capacity: 64);
using var prompt = tensor(new long[] { 5, 9, 13 }).view(1, -1);
using var logits = model.forward(prompt, cache, lastTokenOnly: true);
using var attention = new MultiHeadAttention(hiddenSize: 2048, numHeads: 32, numKvHeads: 8);

bool ok = tokens.Count == 8 && cache.Length == 3 && logits.shape[2] == model.Config.VocabSize
    && KvCache.EstimateBytes(model.Config, 1, 64, ScalarType.Float32) == cache.SizeInBytes;
Console.WriteLine($"package consumer: generated [{string.Join(",", tokens)}], cache {cache.SizeInBytes} bytes, attention groups {attention.GroupSize}: {(ok ? "ok" : "WRONG")}");
return ok ? 0 : 1;
