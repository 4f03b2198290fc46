using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class DecoderModelTests
{
    [Theory]
    [InlineData(8, 8)] // MHA
    [InlineData(8, 2)] // GQA
    [InlineData(8, 1)] // MQA
    public void Prefill_then_decode_with_the_cache_equals_one_full_forward(int heads, int kvHeads)
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config(heads, kvHeads);
        using var model = Tiny.Model(config);
        var ids = Tiny.Ids(3, 14, config.VocabSize);
        var full = model.forward(ids);                                  // [B, T, V]

        using var cache = model.CreateCache(batchSize: 3, capacity: 20);
        var pieces = new List<Tensor> { model.forward(ids.narrow(1, 0, 5), cache) };
        for (int t = 5; t < 9; t++)
            pieces.Add(model.forward(ids.narrow(1, t, 1), cache));        // decode
        pieces.Add(model.forward(ids.narrow(1, 9, 5), cache));            // a second chunk after cached tokens
        cache.Length.Should().Be(14);
        Tiny.MaxAbsDiff(cat(pieces, 1), full).Should().BeLessThan(1e-4);
    }

    [Fact]
    public void A_model_holds_one_rope_table_and_standalone_attention_its_own()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config(8, 2));
        model.RotaryTables.Should().HaveCount(1, "the layers share the model's table");
        model.modules().OfType<RotaryEmbedding>().Should().BeEmpty("the model owns its tables outside the module tree");
        model.state_dict().Keys.Should().NotContain(k => k.Contains("rotary"), "RoPE has no state");
        using var attention = new MultiHeadAttention(64, 8, 2);
        attention.modules().OfType<RotaryEmbedding>().Should().HaveCount(1);
        FluentActions.Invoking(() => new MultiHeadAttention(Tiny.Config(8, 2), rotary: new RotaryEmbedding(6)))
            .Should().Throw<ArgumentException>().WithParameterName("rotary");
    }

    [Fact]
    public void Gqa_model_equals_mha_model_with_repeated_kv_weights()
    {
        using var scope = NewDisposeScope();
        var gqaConfig = Tiny.Config(heads: 8, kvHeads: 2);
        using var gqa = Tiny.Model(gqaConfig);
        using var mha = Tiny.Model(gqaConfig with { NumKeyValueHeads = 8 });
        using (no_grad())
        {
            var source = gqa.state_dict();
            foreach (var (name, tensor) in mha.state_dict())
                if (!name.Contains("k_proj") && !name.Contains("v_proj"))
                    tensor.copy_(source[name]);
        }
        for (int i = 0; i < gqaConfig.NumHiddenLayers; i++)
            MultiHeadAttentionTests.LoadRepeated(gqa.Layers[i].Attention, mha.Layers[i].Attention, 4, gqaConfig.HeadDim);
        var ids = Tiny.Ids(2, 12, gqaConfig.VocabSize);
        Tiny.MaxAbsDiff(gqa.forward(ids), mha.forward(ids)).Should().BeLessThan(1e-4);
    }

    [Fact]
    public void State_dict_keys_are_huggingface_llama_keys()
    {
        using var model = Tiny.Model(Tiny.Config(layers: 2));
        var keys = model.state_dict().Keys.ToHashSet();
        var expected = new List<string> { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
        for (int i = 0; i < 2; i++)
        {
            foreach (var p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
                expected.Add($"model.layers.{i}.self_attn.{p}.weight");
            foreach (var p in new[] { "gate_proj", "up_proj", "down_proj" })
                expected.Add($"model.layers.{i}.mlp.{p}.weight");
            expected.Add($"model.layers.{i}.input_layernorm.weight");
            expected.Add($"model.layers.{i}.post_attention_layernorm.weight");
        }
        keys.Should().BeEquivalentTo(expected);
        model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape.Should().Equal(2 * 8, 64);
        model.state_dict()["model.layers.0.self_attn.q_proj.weight"].shape.Should().Equal(8 * 8, 64);
    }

    [Fact]
    public void Tied_embeddings_have_no_lm_head_and_use_the_embedding_matrix()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config() with { TieWordEmbeddings = true });
        model.state_dict().Keys.Should().NotContain("lm_head.weight");
        var ids = Tiny.Ids(1, 4, 97);
        var logits = model.forward(ids);
        // Changing the embedding matrix changes the output projection too.
        using (no_grad()) model.state_dict()["model.embed_tokens.weight"].mul_(2);
        Tiny.MaxAbsDiff(model.forward(ids), logits).Should().BeGreaterThan(1e-3);
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, 0.15)]
    [InlineData(ScalarType.Float16, 0.03)]
    public void Runs_after_conversion_to_half_precision(ScalarType dtype, double tolerance)
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config();
        using var model = Tiny.Model(config);
        var ids = Tiny.Ids(2, 9, config.VocabSize);
        var reference = model.forward(ids);
        model.to(dtype);
        model.Dtype.Should().Be(dtype);
        var converted = model.forward(ids);
        converted.dtype.Should().Be(dtype);
        Tiny.MaxAbsDiff(converted, reference).Should().BeLessThan(tolerance);

        using var cache = model.CreateCache(2, 12);
        cache.Dtype.Should().Be(dtype);
        var cached = cat([model.forward(ids.narrow(1, 0, 6), cache), model.forward(ids.narrow(1, 6, 3), cache)], 1);
        Tiny.MaxAbsDiff(cached, converted).Should().BeLessThan(tolerance);
    }

    [Theory]
    [InlineData(ScalarType.Float32, ScalarType.BFloat16, null, 0.05)]  // a bf16 cache halves a float32 model's cache
    [InlineData(ScalarType.Float32, ScalarType.Float16, null, 0.01)]
    [InlineData(ScalarType.BFloat16, ScalarType.Float32, null, 0.15)]  // a float32 cache under a bf16 model
    [InlineData(ScalarType.Float32, ScalarType.BFloat16, 4, 0.05)]     // ring buffer, with a chunk longer than the window
    public void A_cache_may_hold_another_dtype_than_the_model(ScalarType modelDtype, ScalarType cacheDtype, int? window, double tolerance)
    {
        // Prefill, a chunk, then single-token decode steps (the fused CPU kernel reads the cache's dtype), against the
        // model's own forward over the whole sequence without a cache.
        using var scope = NewDisposeScope();
        var config = Tiny.Config(slidingWindow: window);
        using var model = Tiny.Model(config);
        model.to(modelDtype);
        var ids = Tiny.Ids(2, 14, config.VocabSize);
        var reference = model.forward(ids);
        using var cache = model.CreateCache(2, 16, cacheDtype);
        cache.Dtype.Should().Be(cacheDtype);
        cache.SizeInBytes.Should().Be(KvCache.EstimateBytes(config, 2, 16, cacheDtype));
        var pieces = new List<Tensor> { model.forward(ids.narrow(1, 0, 5), cache), model.forward(ids.narrow(1, 5, 6), cache) };
        for (int t = 11; t < 14; t++) pieces.Add(model.forward(ids.narrow(1, t, 1), cache));
        var cached = cat(pieces.ToArray(), 1);
        cached.dtype.Should().Be(modelDtype);
        Tiny.MaxAbsDiff(cached, reference).Should().BeLessThan(tolerance);
        Tiny.MaxAbsDiff(cached, reference).Should().BeGreaterThan(0, "keys and values went through the cache's precision");
    }

    [Fact]
    public void Models_are_built_directly_in_the_requested_dtype_without_touching_global_defaults()
    {
        using var model = new DecoderModel(Tiny.Config(), ScalarType.BFloat16);
        model.parameters().Should().AllSatisfy(p => p.dtype.Should().Be(ScalarType.BFloat16));
        get_default_dtype().Should().Be(ScalarType.Float32);
        FluentActions.Invoking(() => new DecoderModel(Tiny.Config(), ScalarType.Int64)).Should().Throw<ArgumentException>().WithParameterName("dtype");
    }

    [Fact]
    public void Last_token_only_returns_the_last_row_of_the_logits()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny.Model(Tiny.Config());
        var ids = Tiny.Ids(2, 6, 97);
        var last = model.forward(ids, null, lastTokenOnly: true);
        last.shape.Should().Equal(2, 1, 97);
        Tiny.MaxAbsDiff(last, model.forward(ids).narrow(1, 5, 1)).Should().BeLessThan(1e-6);
    }

    [Fact]
    public void Training_reaches_every_parameter_and_lowers_the_loss()
    {
        using var scope = NewDisposeScope();
        var config = Tiny.Config(heads: 4, kvHeads: 2, hidden: 32, vocab: 50);
        using var model = Tiny.Model(config);
        model.train();
        var ids = Tiny.Ids(4, 16, config.VocabSize);
        var inputs = ids.narrow(1, 0, 15);
        var targets = ids.narrow(1, 1, 15).reshape(-1);
        var optimizer = optim.AdamW(model.parameters(), lr: 1e-2);

        float Step(bool checkGradients)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.forward(inputs);
            var loss = nn.functional.cross_entropy(logits.reshape(-1, config.VocabSize), targets);
            loss.backward();
            if (checkGradients)
                foreach (var (name, p) in model.named_parameters())
                {
                    p.grad.Should().NotBeNull($"{name} gets a gradient");
                    p.grad!.abs().sum().item<float>().Should().BeGreaterThan(0, $"{name} gets a non-zero gradient");
                }
            optimizer.step();
            return loss.item<float>();
        }

        float first = Step(checkGradients: true);
        float last = first;
        for (int i = 0; i < 15; i++) last = Step(false);
        last.Should().BeLessThan(first * 0.8f);
    }

    [Fact]
    public void Long_decode_loop_leaves_the_live_tensor_count_flat()
    {
        var config = Tiny.Config();
        using var model = Tiny.Model(config);
        using var cache = model.CreateCache(2, 200);
        using (var prompt = Tiny.Ids(2, 8, config.VocabSize))
            model.forward(prompt, cache).Dispose();
        var next = zeros([2, 1], ScalarType.Int64);
        void DecodeSteps(int n)
        {
            for (int i = 0; i < n; i++)
            {
                using var logits = model.forward(next, cache);
                using var argmax = logits.argmax(-1);
                next.copy_(argmax);
            }
        }
        DecodeSteps(5);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        DecodeSteps(150);
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        after.Should().Be(before);
        cache.Length.Should().Be(8 + 155);
        next.Dispose();
    }
}
