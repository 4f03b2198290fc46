using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class TokenGeneratorTests
{
    private static readonly GenerationOptions NoStop = new() { MaxNewTokens = 16, StopTokenIds = [] };

    [Theory]
    [InlineData("hf-tiny", "llama_gqa")]
    [InlineData("hf-tiny", "llama_mha")]
    [InlineData("hf-tiny", "llama_mqa")]
    [InlineData("hf-ref", "mistral_sliding")]
    [InlineData("hf-ref", "qwen2_bias")]
    [InlineData("hf-ref", "llama3_rope")]
    public void Greedy_generation_equals_transformers_generate(string set, string name)
    {
        using var scope = NewDisposeScope();
        string directory = Path.Combine(Fixtures.Root, set, name);
        using var model = DecoderModel.FromPretrained(directory);
        var expected = Fixtures.Expected(directory);
        var prompt = expected["gen_prompt"].data<long>().Select(t => (int)t).ToArray();
        var want = expected["gen_tokens"].data<long>().Skip(prompt.Length).Select(t => (int)t).ToArray();
        var generated = new TokenGenerator(model).Generate(prompt, NoStop with { MaxNewTokens = want.Length });
        generated.Should().Equal(want);
    }

    [Fact]
    public void Left_padded_batch_equals_transformers_batched_generate_and_each_prompt_alone()
    {
        using var scope = NewDisposeScope();
        string directory = Fixtures.HfRef("llama_padded");
        using var model = DecoderModel.FromPretrained(directory);
        var expected = Fixtures.Expected(directory);
        var prompt = expected["gen_prompt"];
        var mask = expected["gen_attention_mask"];
        var tokens = expected["gen_tokens"];
        int promptLength = (int)prompt.shape[1];
        int newTokens = (int)tokens.shape[1] - promptLength;
        var prompts = new List<IReadOnlyList<int>>();
        for (int b = 0; b < prompt.shape[0]; b++)
        {
            var ids = prompt[b].data<long>().ToArray();
            var real = mask[b].data<long>().ToArray();
            prompts.Add(ids.Where((_, i) => real[i] == 1).Select(t => (int)t).ToArray());
        }
        prompts.Select(p => p.Count).Should().OnlyHaveUniqueItems("the batch really mixes prompt lengths");

        var generator = new TokenGenerator(model);
        var options = NoStop with { MaxNewTokens = newTokens };
        var batched = generator.Generate(prompts, options);
        for (int b = 0; b < prompts.Count; b++)
        {
            var want = tokens[b].data<long>().Skip(promptLength).Select(t => (int)t).ToArray();
            batched[b].Should().Equal(want, $"sequence {b} matches transformers");
            generator.Generate(prompts[b], options).Should().Equal(want, $"sequence {b} alone matches too");
        }
    }

    [Fact]
    public void Each_sequence_of_a_batch_stops_on_its_own_stop_token()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var generator = new TokenGenerator(model);
        int[] first = [5, 9, 13, 200], second = [7, 7, 1];
        var free = generator.Generate([first, second], NoStop);
        int stop = free[0][3];           // what the first sequence says at its 4th step
        free[1].Take(5).Should().NotContain(stop, "the test needs the other sequence to keep going");
        var stopped = generator.Generate([first, second], NoStop with { StopTokenIds = [stop] });
        stopped[0].Should().Equal(free[0].Take(free[0].ToList().IndexOf(stop) + 1), "the stop token is emitted, then the sequence ends");
        stopped[1].Should().Equal(free[1].Take(stopped[1].Count));
        stopped[1].Count.Should().BeGreaterThan(stopped[0].Count);
    }

    [Fact]
    public void Eos_from_the_config_stops_by_default()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var free = new TokenGenerator(model).Generate([5, 9, 13], NoStop with { MaxNewTokens = 6 });
        using var eosModel = new DecoderModel(model.Config with { EosTokenIds = [free[2]] });
        eosModel.load_state_dict(model.state_dict());
        eosModel.eval();
        new TokenGenerator(eosModel).Generate([5, 9, 13], GenerationOptions.Greedy(6)).Should().Equal(free.Take(free.ToList().IndexOf(free[2]) + 1));
    }

    [Fact]
    public void Seeded_sampling_is_reproducible_and_top_k_1_is_greedy()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var generator = new TokenGenerator(model);
        int[] prompt = [3, 1, 4, 1, 5];
        var sampling = new GenerationOptions { MaxNewTokens = 20, Temperature = 1.3, TopP = 0.95, StopTokenIds = [], Seed = 42 };
        var a = generator.Generate(prompt, sampling);
        var b = generator.Generate(prompt, sampling);
        var c = generator.Generate(prompt, sampling with { Seed = 43 });
        a.Should().Equal(b);
        a.Should().NotEqual(c, "another seed draws other tokens (a 20-token collision is astronomically unlikely here)");

        var greedy = generator.Generate(prompt, NoStop with { MaxNewTokens = 20 });
        generator.Generate(prompt, sampling with { TopK = 1, TopP = 1.0 }).Should().Equal(greedy);
    }

    [Fact]
    public async Task Streaming_yields_the_same_tokens_sync_and_async()
    {
        // No dispose scope here: a scope belongs to one thread, and this test awaits (see DisposeScopeThreadingTests).
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_mqa"));
        var generator = new TokenGenerator(model);
        var all = generator.Generate([10, 20, 30], NoStop);
        generator.Stream([10, 20, 30], NoStop).ToList().Should().Equal(all);
        var streamed = new List<int>();
        await foreach (var token in generator.StreamAsync([10, 20, 30], NoStop)) streamed.Add(token);
        streamed.Should().Equal(all);
    }

    [Fact]
    public void Cancellation_stops_within_a_step()
    {
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var cancellation = new CancellationTokenSource();
        var seen = new List<int>();
        var act = () =>
        {
            foreach (var token in new TokenGenerator(model).Stream([1, 2, 3], NoStop with { MaxNewTokens = 100 }, cancellation.Token))
            {
                seen.Add(token);
                if (seen.Count == 3) cancellation.Cancel();
            }
        };
        act.Should().Throw<OperationCanceledException>();
        seen.Should().HaveCount(3);
    }

    [Fact]
    public void Invalid_options_are_clear_errors()
    {
        using var model = Tiny.Model(Tiny.Config());
        var generator = new TokenGenerator(model);
        int[] prompt = [1, 2, 3];
        Run(new GenerationOptions { Temperature = -0.5 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("Temperature").WithMessage("*-0.5*");
        Run(new GenerationOptions { TopP = 0 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("TopP").WithMessage("*(0, 1]*");
        Run(new GenerationOptions { TopP = 1.5 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("TopP");
        Run(new GenerationOptions { TopK = -1 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("TopK");
        Run(new GenerationOptions { MaxNewTokens = 0 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("MaxNewTokens");
        Run(new GenerationOptions { RepetitionPenalty = 0 }).Should().Throw<ArgumentOutOfRangeException>().WithParameterName("RepetitionPenalty");
        using var small = model.CreateCache(1, 10);
        FluentActions.Invoking(() => generator.Generate([prompt], new GenerationOptions { MaxNewTokens = 9 }, cache: small).ToList())
            .Should().Throw<ArgumentOutOfRangeException>().WithMessage("*needs 11 cache slots, but the cache holds 10*");
        FluentActions.Invoking(() => generator.Generate([1, 2, 500], NoStop)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*500*");
        FluentActions.Invoking(() => generator.Generate(Array.Empty<int>(), NoStop)).Should().Throw<ArgumentException>().WithMessage("*empty*");

        Func<IReadOnlyList<int>> Run(GenerationOptions options) => () => generator.Generate(prompt, options);
    }

    [Fact]
    public void Generation_reuses_the_cache_rather_than_rerunning_the_prompt()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config());
        using var cache = model.CreateCache(1, 40);
        new TokenGenerator(model).Generate([[1, 2, 3, 4, 5]], NoStop with { MaxNewTokens = 10 }, cache: cache);
        cache.Length.Should().Be(5 + 9, "the prompt once, then one token per step (the last token is never fed back)");
    }
}
