using System.Text.Json;
using FluentAssertions;
using GqaTransformer;
using Microsoft.Extensions.AI;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// The chat client over the tiny llama_gqa checkpoint (random weights, vocabulary 256) with a byte-level tokenizer.json
/// and a ChatML template written here: its replies are checked against an independent path (the template rendered by
/// hand, encoded, generated with <see cref="TokenGenerator"/> from an empty cache), and cache reuse against a fresh client.
/// </summary>
public class GqaChatClientTests
{
    private static readonly ChatMessage[] FirstTurn = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "hello there")];

    private static string Independent(string directory, IEnumerable<ChatMessage> messages, int maxTokens, GenerationOptions? options = null,
        string template = ChatFixture.Template, IReadOnlyDictionary<string, object?>? extra = null)
    {
        var tokenizer = HfTokenizer.FromFile(directory);
        string prompt = ChatTemplate.Parse(template).Render(messages.Select(m => (m.Role.Value, m.Text)), addGenerationPrompt: true, extra: extra);
        using var model = DecoderModel.FromPretrained(directory);
        using var generator = new TokenGenerator(model);
        var ids = generator.Generate(tokenizer.Encode(prompt, addSpecialTokens: false), (options ?? new GenerationOptions()) with { MaxNewTokens = maxTokens, StopTokenIds = [2] });
        return tokenizer.Decode(ids.Where(id => id != 2), skipSpecialTokens: true);
    }

    [Fact]
    public async Task A_reply_equals_the_template_encoded_and_generated_by_hand()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var response = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 12 });
        response.Text.Should().Be(Independent(fixture.Path, FirstTurn, 12));
        response.Usage!.InputTokenCount.Should().BeGreaterThan(10);
        response.Usage.OutputTokenCount.Should().BeInRange(1, 12);
        response.Usage.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().Be(0);
        response.FinishReason.Should().NotBeNull();
    }

    [Fact]
    public async Task The_next_turn_reads_only_its_new_tokens_and_an_edited_history_rewinds()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var first = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 8 });
        long firstPrompt = first.Usage!.InputTokenCount!.Value;
        var secondTurn = FirstTurn.Append(new ChatMessage(ChatRole.Assistant, first.Text)).Append(new ChatMessage(ChatRole.User, "and then?")).ToList();
        var second = await client.GetResponseAsync(secondTurn, new ChatOptions { MaxOutputTokens = 8 });
        second.Usage!.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().BeGreaterThanOrEqualTo(firstPrompt, "the first prompt is a prefix of the second");
        second.Text.Should().Be(Independent(fixture.Path, secondTurn, 8), "reusing the cache must not change the reply");

        var edited = new List<ChatMessage> { new(ChatRole.System, "Be brief."), new(ChatRole.User, "hello!") };
        var third = await client.GetResponseAsync(edited, new ChatOptions { MaxOutputTokens = 8 });
        third.Usage!.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().BeInRange(1, firstPrompt - 1, "the cache rewinds to the common prefix");
        third.Text.Should().Be(Independent(fixture.Path, edited, 8));
    }

    /// <summary>The fixture's config with Mistral's <c>sliding_window</c>: a cache larger than it is a ring.</summary>
    private static ChatFixture WithSlidingWindow(ChatFixture fixture, int window)
    {
        string configPath = Path.Combine(fixture.Path, "config.json");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["sliding_window"] = window;
        File.WriteAllText(configPath, config.ToJsonString());
        return fixture;
    }

    [Fact]
    public async Task An_edited_history_past_a_wrapped_sliding_window_is_read_again()
    {
        // A Mistral-style window of 16 tokens: the first turn's prompt (about 40 byte tokens) wraps the ring, so the cache
        // no longer holds the common prefix of an edited history; the client reads the prompt again instead of failing.
        using var fixture = WithSlidingWindow(new ChatFixture(), 16);
        using var client = GqaChatClient.FromPretrained(fixture.Path, capacity: 128);
        var options = new ChatOptions { MaxOutputTokens = 6 };
        await client.GetResponseAsync(FirstTurn, options);
        client.GetService<KvCache>()!.IsRingBuffer.Should().BeTrue();
        ChatMessage[] edited = [new(ChatRole.System, "Be kind."), new(ChatRole.User, "hello again")];
        var reply = await client.GetResponseAsync(edited, options);
        reply.Text.Should().Be(Independent(fixture.Path, edited, 6), "the same reply as from an empty cache");
        reply.Usage!.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().Be(0, "nothing could be kept");
    }

    [Fact]
    public async Task A_failed_step_in_a_wrapped_sliding_window_leaves_the_client_usable()
    {
        // A decode step whose input embedding is NaN fails after the model wrote (and counted) its token; in a wrapped
        // ring the cache cannot be rewound to what it held before, so it starts afresh: the error is the step's own, and
        // the next request is right.
        using var fixture = WithSlidingWindow(new ChatFixture(), 16);
        var tokenizer = HfTokenizer.FromFile(fixture.Path);
        string prompt = ChatTemplate.Parse(ChatFixture.Template).Render(FirstTurn.Select(m => (m.Role.Value, m.Text)), addGenerationPrompt: true);
        var promptIds = tokenizer.Encode(prompt, addSpecialTokens: false);
        IReadOnlyList<int> reply;
        using (var model = DecoderModel.FromPretrained(fixture.Path))
        using (var generator = new TokenGenerator(model))
            reply = generator.Generate(promptIds, new GenerationOptions { MaxNewTokens = 6, StopTokenIds = [2] });
        int poisoned = reply.Take(reply.Count - 1).First(id => !promptIds.Contains(id));   // fed back at a decode step, not in the prompt

        using var client = GqaChatClient.FromPretrained(fixture.Path, capacity: 128);
        var embedding = client.GetService<DecoderModel>()!.named_parameters().First(p => p.name == "model.embed_tokens.weight").parameter;
        using var saved = embedding[poisoned].detach().clone();
        using (TorchSharp.torch.no_grad()) embedding[poisoned].fill_(double.NaN);
        var options = new ChatOptions { MaxOutputTokens = 6 };
        await client.Invoking(c => c.GetResponseAsync(FirstTurn, options)).Should().ThrowAsync<NonFiniteLogitsException>();
        client.GetService<KvCache>()!.IsRingBuffer.Should().BeTrue();
        using (TorchSharp.torch.no_grad()) embedding[poisoned].copy_(saved);
        (await client.GetResponseAsync(FirstTurn, options)).Text.Should().Be(Independent(fixture.Path, FirstTurn, 6));
    }

    [Fact]
    public async Task Streaming_gives_the_same_text_and_a_stop_sequence_ends_it_unreturned()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var options = new ChatOptions { MaxOutputTokens = 16 };
        string full = (await client.GetResponseAsync(FirstTurn, options)).Text;
        var pieces = new List<string>();
        await foreach (var update in client.GetStreamingResponseAsync(FirstTurn, options)) pieces.Add(update.Text);
        string.Concat(pieces).Should().Be(full);
        full.Length.Should().BeGreaterThan(3, "the fixture's greedy reply is long enough to cut");
        string stop = full.Substring(2, 2);
        int at = full.IndexOf(stop, StringComparison.Ordinal);
        var stopped = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 16, StopSequences = [stop] });
        stopped.Text.Should().Be(full[..at]);
        stopped.FinishReason.Should().Be(ChatFinishReason.Stop);
    }

    [Fact]
    public async Task Text_held_back_as_a_possible_stop_sequence_is_returned_when_the_reply_ends_otherwise()
    {
        using var fixture = new ChatFixture();
        string plain;
        using (var client = GqaChatClient.FromPretrained(fixture.Path))
            plain = (await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24 })).Text;
        // Make an ASCII character of the greedy reply the end-of-turn id (byte-level: its id is its byte), so the reply
        // now ends there at a stop id, not for want of room; one whose predecessor is ASCII too, since the random model's
        // replies are mostly invalid UTF-8 whose U+FFFD run shifts as bytes arrive.
        int stopAt = Enumerable.Range(3, plain.Length - 3).First(i => plain[i] < 0x80 && plain[i - 1] < 0x80 && plain.IndexOf(plain[i]) == i);
        File.WriteAllText(Path.Combine(fixture.Path, "generation_config.json"), $$"""{"eos_token_id": [2, {{(int)plain[stopAt]}}]}""");
        using var stopping = GqaChatClient.FromPretrained(fixture.Path);
        var reply = await stopping.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24 });
        reply.FinishReason.Should().Be(ChatFinishReason.Stop);
        reply.Text.Should().Be(plain[..stopAt]);
        string neverComplete = reply.Text[^1..] + "\u0007never";       // its start is the reply's end, so it is held back
        var held = await stopping.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24, StopSequences = [neverComplete] });
        held.Text.Should().Be(reply.Text, "the held-back end comes out when the reply ends at a stop id");
    }

    [Fact]
    public async Task A_cancelled_request_leaves_the_client_usable()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        using var cancel = new CancellationTokenSource();
        var act = async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 64 }, cancel.Token))
                cancel.Cancel();
        };
        await act.Should().ThrowAsync<OperationCanceledException>();
        var after = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 12 });
        after.Text.Should().Be(Independent(fixture.Path, FirstTurn, 12));
        client.CachedTokens.Should().BeGreaterThan(0);
        client.Reset();
        client.CachedTokens.Should().Be(0);
        (await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 12 })).Usage!.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().Be(0);
    }

    [Fact]
    public void Get_service_hands_out_the_model_tokenizer_and_cache()
    {
        using var fixture = new ChatFixture();
        using IChatClient client = GqaChatClient.FromPretrained(fixture.Path);
        client.GetService<DecoderModel>().Should().NotBeNull();
        client.GetService<HfTokenizer>().Should().NotBeNull();
        client.GetService<KvCache>()!.Capacity.Should().Be(512, "max_position_embeddings, below the 8192 default cap");
        client.GetService<ChatClientMetadata>()!.ProviderName.Should().Be("GqaTransformer");
        client.GetService<string>().Should().BeNull();
    }

    [Fact]
    public async Task Bad_requests_are_refused_before_anything_changes()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        await FluentActions.Awaiting(() => client.GetResponseAsync([])).Should().ThrowAsync<ArgumentException>().WithMessage("*At least one message*");
        await FluentActions.Awaiting(() => client.GetResponseAsync(FirstTurn, new ChatOptions { Temperature = -1 })).Should().ThrowAsync<ArgumentException>().WithMessage("*Temperature*");
        var longChat = new[] { new ChatMessage(ChatRole.User, new string('x', 600)) };
        await FluentActions.Awaiting(() => client.GetResponseAsync(longChat)).Should().ThrowAsync<ArgumentException>().WithMessage("*larger capacity*");
        client.CachedTokens.Should().Be(0);
    }

    [Fact]
    public async Task Template_variables_in_the_options_reach_the_template()
    {
        // Qwen3's switch, as its template has it: enable_thinking false closes an empty think block after the generation prompt.
        const string template = ChatFixture.Template + "{% if add_generation_prompt and enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}";
        using var fixture = new ChatFixture(template);
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var tokenizer = HfTokenizer.FromFile(fixture.Path);
        var turns = FirstTurn.Select(m => (m.Role.Value, m.Text)).ToList();
        var thinkingOff = new Dictionary<string, object?> { ["enable_thinking"] = false };
        int expected = tokenizer.Encode(ChatTemplate.Parse(template).Render(turns, addGenerationPrompt: true, extra: thinkingOff), addSpecialTokens: false).Count;
        int plain = tokenizer.Encode(ChatTemplate.Parse(template).Render(turns, addGenerationPrompt: true), addSpecialTokens: false).Count;
        expected.Should().BeGreaterThan(plain);
        ChatOptions With(object? kwargs) => new() { MaxOutputTokens = 1, AdditionalProperties = new() { [GqaChatClient.ChatTemplateKwargsKey] = kwargs } };

        (await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 1 })).Usage!.InputTokenCount.Should().Be(plain);
        (await client.GetResponseAsync(FirstTurn, With(thinkingOff))).Usage!.InputTokenCount.Should().Be(expected);
        (await client.GetResponseAsync(FirstTurn, With(new Dictionary<string, bool> { ["enable_thinking"] = false }))).Usage!.InputTokenCount.Should().Be(expected);
        using var json = JsonDocument.Parse("""{"enable_thinking": false}""");   // options read from a request carry a JSON object
        (await client.GetResponseAsync(FirstTurn, With(json.RootElement))).Usage!.InputTokenCount.Should().Be(expected);
        (await client.GetResponseAsync(FirstTurn, With(new Dictionary<string, object?> { ["enable_thinking"] = true }))).Usage!.InputTokenCount.Should().Be(plain);

        int cached = client.CachedTokens;
        await FluentActions.Awaiting(() => client.GetResponseAsync(FirstTurn, With("enable_thinking=false"))).Should().ThrowAsync<ArgumentException>()
            .WithMessage("*chat_template_kwargs*String*expected a dictionary*");
        await FluentActions.Awaiting(() => client.GetResponseAsync(FirstTurn, With(new Dictionary<string, object?> { ["messages"] = null }))).Should().ThrowAsync<ArgumentException>()
            .WithMessage("*sets 'messages'*");
        client.CachedTokens.Should().Be(cached, "a refused request changes nothing");
    }

    [Fact]
    public async Task Frequency_presence_and_repetition_penalties_act_as_in_the_generator()
    {
        using var fixture = new ChatFixture();
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var plain = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24 });
        var penalised = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24, FrequencyPenalty = 2f, PresencePenalty = 0.5f });
        penalised.Text.Should().Be(Independent(fixture.Path, FirstTurn, 24, new GenerationOptions { FrequencyPenalty = 2, PresencePenalty = 0.5 }));
        penalised.Text.Should().NotBe(plain.Text);
        // a repetition penalty from the defaults (generation_config.json's) counts the prompt too
        var defaults = new GenerationOptions { RepetitionPenalty = 1.8, StopTokenIds = [2] };
        using var model = DecoderModel.FromPretrained(fixture.Path);
        using var repeating = new GqaChatClient(model, HfTokenizer.FromFile(fixture.Path), ChatTemplate.Parse(ChatFixture.Template), defaults: defaults);
        (await repeating.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 24 })).Text
            .Should().Be(Independent(fixture.Path, FirstTurn, 24, defaults));
        var bad = () => client.GetResponseAsync(FirstTurn, new ChatOptions { FrequencyPenalty = 3f });
        (await bad.Should().ThrowAsync<ArgumentException>()).Where(e => e.Message.Contains("FrequencyPenalty"));
    }

    /// <summary>DeepSeek-R1's way: the generation prompt opens the thoughts; Qwen3's enable_thinking false closes them empty instead.</summary>
    private const string ThinkingTemplate = ChatFixture.Template
        + "{% if add_generation_prompt %}{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}";

    [Fact]
    public async Task A_reply_inside_thoughts_the_prompt_opened_comes_back_as_reasoning_and_effort_none_turns_thinking_off()
    {
        using var fixture = new ChatFixture(ThinkingTemplate);
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var thinking = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 16 });
        string thoughts = Independent(fixture.Path, FirstTurn, 16, template: ThinkingTemplate);
        thoughts.Should().NotContain("</think>", "the random model's reply never closes its thoughts");
        thinking.Messages.Single().Contents.Should().ContainSingle().Which.Should().BeOfType<TextReasoningContent>()
            .Which.Text.Should().Be(thoughts.Trim('\n'), "all of it is thought; the newlines around thoughts are the template's");
        thinking.Text.Should().BeEmpty();
        thinking.Usage!.ReasoningTokenCount.Should().Be(thinking.Usage.OutputTokenCount);

        var streamed = new List<AIContent>();
        await foreach (var update in client.GetStreamingResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 16 })) streamed.AddRange(update.Contents);
        string.Concat(streamed.OfType<TextReasoningContent>().Select(r => r.Text)).Should().Be(thoughts.Trim('\n'));
        streamed.OfType<TextContent>().Should().BeEmpty();

        var hidden = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 16, Reasoning = new ReasoningOptions { Output = ReasoningOutput.None } });
        hidden.Messages.Single().Contents.Should().BeEmpty("ReasoningOutput.None leaves the thoughts out");

        var off = await client.GetResponseAsync(FirstTurn, new ChatOptions { MaxOutputTokens = 16, Reasoning = new ReasoningOptions { Effort = ReasoningEffort.None } });
        string answer = Independent(fixture.Path, FirstTurn, 16, template: ThinkingTemplate, extra: new Dictionary<string, object?> { ["enable_thinking"] = false });
        off.Text.Should().Be(answer, "enable_thinking false closes the thoughts in the prompt, so the reply is the answer");
        off.Messages.Single().Contents.OfType<TextReasoningContent>().Should().BeEmpty();
        off.Usage!.InputTokenCount.Should().BeGreaterThan(thinking.Usage.InputTokenCount!.Value);
        off.Usage.ReasoningTokenCount.Should().BeNull();

        var kwargsWin = new ChatOptions
        {
            MaxOutputTokens = 1, Reasoning = new ReasoningOptions { Effort = ReasoningEffort.None },
            AdditionalProperties = new() { [GqaChatClient.ChatTemplateKwargsKey] = new Dictionary<string, object?> { ["enable_thinking"] = true } },
        };
        (await client.GetResponseAsync(FirstTurn, kwargsWin)).Usage!.InputTokenCount.Should().Be(thinking.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Tools_calls_and_results_reach_the_prompt_as_transformers_renders_them()
    {
        // Qwen2.5's real template over the byte-level fixture: the prompt of the reference's tool_calling conversation,
        // written with M.E.AI's contents and AIFunctionDeclarations, is transformers' render of it, token for token.
        string path = Path.Combine(Fixtures.Root, "chat-templates", "real", "Qwen-Qwen2.5-7B-Instruct.jinja");
        using var fixture = new ChatFixture(File.ReadAllText(path));
        string configPath = Path.Combine(fixture.Path, "config.json");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["max_position_embeddings"] = 2048;        // the tools' system prompt is longer than the fixture's 512
        File.WriteAllText(configPath, config.ToJsonString());
        using var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "chat-templates", "real-expected.json")));
        var conversation = reference.RootElement.GetProperty("conversations").GetProperty("tool_calling");
        string expected = reference.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("template").GetString() == "llama.cpp/Qwen-Qwen2.5-7B-Instruct"
            && c.GetProperty("conversation").GetString() == "tool_calling" && c.GetProperty("add_generation_prompt").GetBoolean() && !c.TryGetProperty("template_kwargs", out _))
            .GetProperty("output").GetString()!;
        var tokenizer = HfTokenizer.FromFile(fixture.Path);

        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var options = ChatTemplateInputTests.AsChatOptions(conversation);
        options.MaxOutputTokens = 1;
        var messages = ChatTemplateInputTests.AsChatMessages(conversation);
        (await client.GetResponseAsync(messages, options)).Usage!.InputTokenCount.Should().Be(tokenizer.Encode(expected, addSpecialTokens: false).Count);
        var next = messages.Append(new ChatMessage(ChatRole.User, "And tomorrow?")).ToList();
        var again = await client.GetResponseAsync(next, options);
        again.Usage!.AdditionalCounts![GqaChatClient.CachedInputTokensKey].Should().Be(tokenizer.Encode(expected, addSpecialTokens: false).Count - "assistant\n".Length,
            "the next turn's render extends this one's up to the generation prompt's role (one byte a token)");
        options.ToolMode = ChatToolMode.None;
        (await client.GetResponseAsync(messages, options)).Usage!.InputTokenCount.Should().BeLessThan(tokenizer.Encode(expected, addSpecialTokens: false).Count - 500,
            "ToolMode.None leaves the tools' system prompt out");
    }
}
