// Generates a continuation from a HuggingFace checkpoint directory.
//   dotnet run --project samples/GenerateText -- MODEL_DIR "The capital of France is"   (needs a tokenizer in MODEL_DIR)
//   dotnet run --project samples/GenerateText -- MODEL_DIR --ids 1,15043,29892          (token ids in, token ids out)
using GqaTransformer;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: GenerateText MODEL_DIR \"prompt text\" | MODEL_DIR --ids 1,2,3");
    return 2;
}
string directory = args[0];
using var model = DecoderModel.FromPretrained(directory);     // float32 on the CPU; pass ScalarType.BFloat16 to halve it
using var generator = new TokenGenerator(model);
var options = new GenerationOptions { MaxNewTokens = 24 };    // greedy; set Temperature, TopK, TopP, Seed to sample

if (args[1] == "--ids")
{
    int[] prompt = args[2].Split(',').Select(int.Parse).ToArray();
    var tokens = generator.Generate(prompt, options);
    Console.WriteLine(string.Join(",", tokens));
    return 0;
}

// tokenizer.model (SentencePiece), a .tiktoken file, or vocab.json + merges.txt in the checkpoint directory.
string tokenizerPath = File.Exists(Path.Combine(directory, "tokenizer.model")) ? Path.Combine(directory, "tokenizer.model") : directory;
var tokenizer = TextGeneration.LoadTokenizer(tokenizerPath);
Console.Write(args[1]);
await foreach (var piece in generator.StreamTextAsync(tokenizer, args[1], options))
    Console.Write(piece);                                     // each piece as soon as it is decoded
Console.WriteLine();
return 0;
