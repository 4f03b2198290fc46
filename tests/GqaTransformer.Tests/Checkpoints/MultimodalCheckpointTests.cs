using FluentAssertions;
using GqaTransformer;
using System.Text.Json.Nodes;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// Gemma 3 4B and up ship as <c>Gemma3ForConditionalGeneration</c>: the language model's config is the <c>text_config</c>
/// (only what differs from the defaults) and its tensors sit under <c>language_model.model.</c> (transformers 4) or
/// <c>model.language_model.</c> (transformers 5) beside a vision tower. The text model loads from such a directory.
/// </summary>
public class MultimodalCheckpointTests
{
    [Theory]
    [InlineData("language_model.model.")]
    [InlineData("model.language_model.")]
    public void The_language_model_of_a_gemma3_multimodal_checkpoint_loads_and_computes_as_the_text_model(string prefix)
    {
        using var scope = NewDisposeScope();
        var config = ModelFamilyTests.Configs["gemma3_text"];
        using var model = ModelFamilyTests.Randomised(config);
        using var directory = new Fixtures.TempDirectory();
        var tensors = model.state_dict().Select(p => new KeyValuePair<string, Tensor>(prefix + p.Key["model.".Length..], p.Value)).ToList();
        tensors.Add(new("vision_tower.vision_model.embeddings.patch_embedding.weight", randn(4, 3, 2, 2)));
        tensors.Add(new("multi_modal_projector.mm_input_projection_weight", randn(8, 64)));
        SafetensorsFile.Save(Path.Combine(directory.Path, "model.safetensors"), tensors);
        var text = new JsonObject   // as the hub writes it: what differs from Gemma3TextConfig's defaults
        {
            ["model_type"] = "gemma3_text", ["hidden_size"] = config.HiddenSize, ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumHiddenLayers, ["num_attention_heads"] = config.NumAttentionHeads,
            ["num_key_value_heads"] = config.NumKeyValueHeads, ["head_dim"] = config.HeadDim, ["vocab_size"] = config.VocabSize,
            ["sliding_window"] = config.SlidingWindow, ["sliding_window_pattern"] = config.SlidingWindowPattern,
            ["query_pre_attn_scalar"] = config.QueryPreAttnScalar, ["rms_norm_eps"] = config.RmsNormEps,
            ["rope_local_base_freq"] = config.RopeLocalBaseFreq,
            ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = config.RopeScaling!.Factor },
        };
        var outer = new JsonObject
        {
            ["architectures"] = new JsonArray("Gemma3ForConditionalGeneration"), ["model_type"] = "gemma3",
            ["text_config"] = text, ["vision_config"] = new JsonObject { ["model_type"] = "siglip_vision_model" },
            ["eos_token_id"] = new JsonArray(1, 106),
        };
        File.WriteAllText(Path.Combine(directory.Path, "config.json"), outer.ToJsonString());

        using var loaded = DecoderModel.FromPretrained(directory.Path);
        loaded.Config.ModelType.Should().Be("gemma3_text");
        loaded.Config.EosTokenIds.Should().Equal(1, 106);
        loaded.Config.TieWordEmbeddings.Should().BeTrue("Gemma3TextConfig's default");
        var ids = Tiny.Ids(1, 12, config.VocabSize);
        Tiny.MaxAbsDiff(loaded.forward(ids), model.forward(ids)).Should().Be(0);
    }
}
