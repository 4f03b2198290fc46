using System.Text.Json;
using GqaTransformer;

namespace GqaTransformer.Tests;

/// <summary>
/// A chat model directory for tests: the tiny llama_gqa checkpoint (random weights, vocabulary 256) with TestData/chat-tiny's
/// byte-level tokenizer.json (ids 1 and 2 are &lt;|im_start|&gt; and &lt;|im_end|&gt;), ChatML template and generation_config.json.
/// </summary>
internal sealed class ChatFixture : IDisposable
{
    public const string Template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    private readonly Fixtures.TempDirectory _directory = new();

    public ChatFixture(string? template = null)
    {
        foreach (var file in new[] { "config.json", "model.safetensors" })
            File.Copy(System.IO.Path.Combine(Fixtures.HfTiny("llama_gqa"), file), System.IO.Path.Combine(Path, file));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
            File.Copy(System.IO.Path.Combine(Fixtures.Root, "chat-tiny", file), System.IO.Path.Combine(Path, file));
        if (template is not null)
            File.WriteAllText(System.IO.Path.Combine(Path, "tokenizer_config.json"), JsonSerializer.Serialize(new { chat_template = template, eos_token = "<|im_end|>" }));
    }

    public string Path => _directory.Path;

    public void Dispose() => _directory.Dispose();
}
