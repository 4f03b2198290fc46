using System.Text.Json;
using GqaTransformer;

namespace GqaTransformer.Tests;

/// <summary>
/// A chat model directory for tests: the tiny llama_gqa checkpoint (random weights, vocabulary 256) with a byte-level
/// tokenizer.json (ids 1 and 2 are &lt;|im_start|&gt; and &lt;|im_end|&gt;), a ChatML template and generation_config.json.
/// </summary>
internal sealed class ChatFixture : IDisposable
{
    public const string Template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    private readonly Fixtures.TempDirectory _directory = new();

    public ChatFixture(string? template = null)
    {
        foreach (var file in new[] { "config.json", "model.safetensors" })
            File.Copy(System.IO.Path.Combine(Fixtures.HfTiny("llama_gqa"), file), System.IO.Path.Combine(Path, file));
        var vocab = Enumerable.Range(0, 256).ToDictionary(b => TokenizerSteps.ByteToChar[b].ToString(), b => b);
        File.WriteAllText(System.IO.Path.Combine(Path, "tokenizer.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["added_tokens"] = new[] { new { id = 1, content = "<|im_start|>", special = true }, new { id = 2, content = "<|im_end|>", special = true } },
            ["pre_tokenizer"] = new { type = "ByteLevel", add_prefix_space = false, use_regex = true },
            ["decoder"] = new { type = "ByteLevel" },
            ["model"] = new { type = "BPE", vocab, merges = Array.Empty<string>() },
        }));
        File.WriteAllText(System.IO.Path.Combine(Path, "tokenizer_config.json"), JsonSerializer.Serialize(new { chat_template = template ?? Template, eos_token = "<|im_end|>" }));
        File.WriteAllText(System.IO.Path.Combine(Path, "generation_config.json"), """{"eos_token_id": [2]}""");
    }

    public string Path => _directory.Path;

    public void Dispose() => _directory.Dispose();
}
