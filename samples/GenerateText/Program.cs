// Usage: GenerateText MODEL_DIR "prompt text"       (MODEL_DIR holds a tokenizer: tokenizer.json, tokenizer.model, ...)
//        GenerateText MODEL_DIR --ids 1,15043,29892  (token ids in, token ids out)
// Wrong arguments print this usage to standard error and exit 2; so does a model directory that cannot be loaded.
//
// Generates a continuation from a HuggingFace checkpoint directory.
//   dotnet run --project samples/GenerateText -- MODEL_DIR "The capital of France is"
using GqaTransformer;

const string Usage = "usage: GenerateText MODEL_DIR \"prompt text\"  |  GenerateText MODEL_DIR --ids 1,2,3";
int[]? ids = null;
if (args.Length == 3 && args[1] == "--ids")
{
    ids = ParseIds(args[2]);
    if (ids is null) return Fail($"error: --ids must be comma-separated non-negative integers, but was '{args[2]}'.\n{Usage}");
}
else if (args.Length != 2 || args[1].StartsWith("--", StringComparison.Ordinal))
{
    return Fail(Usage);
}
string directory = args[0];
if (!Directory.Exists(directory)) return Fail($"error: '{directory}' is not a directory; expected a checkpoint directory (config.json and *.safetensors).");

using var model = Load(directory);                            // float32 on the CPU; pass ScalarType.BFloat16 to halve it
if (model is null) return 2;
using var generator = new TokenGenerator(model);
var options = new GenerationOptions { MaxNewTokens = 24 };    // greedy; set Temperature, TopK, TopP, Seed to sample

if (ids is not null)
{
    foreach (int id in ids)
        if (id >= model.Config.VocabSize) return Fail($"error: token id {id} is not below the model's vocabulary size, {model.Config.VocabSize}.");
    var tokens = generator.Generate(ids, options);
    Console.WriteLine(string.Join(",", tokens));
    return 0;
}

// tokenizer.model (SentencePiece), a .tiktoken file, or vocab.json + merges.txt in the checkpoint directory.
string tokenizerPath = File.Exists(Path.Combine(directory, "tokenizer.model")) ? Path.Combine(directory, "tokenizer.model") : directory;
Microsoft.ML.Tokenizers.Tokenizer tokenizer;
try
{
    tokenizer = TextGeneration.LoadTokenizer(tokenizerPath);
}
catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException)
{
    return Fail($"error: a text prompt needs a tokenizer: {e.Message} Give --ids instead.");
}
Console.Write(args[1]);
await foreach (var piece in generator.StreamTextAsync(tokenizer, args[1], options))
    Console.Write(piece);                                     // each piece as soon as it is decoded
Console.WriteLine();
return 0;

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

static int[]? ParseIds(string text)
{
    var parts = text.Split(',');
    var ids = new int[parts.Length];
    for (int i = 0; i < parts.Length; i++)
        if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
            return null;
    return ids;
}
