using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

public class GenerationConfigTests
{
    [Fact]
    public void Reads_a_list_of_stop_ids_and_the_sampling_defaults_as_transformers_applies_them()
    {
        using var directory = new Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory.Path, "generation_config.json"), """
            {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0"}
            """);
        var config = GenerationConfig.FromFile(directory.Path)!;
        config.EosTokenIds.Should().Equal(128001, 128008, 128009);
        var options = config.ToOptions(new GenerationOptions { MaxNewTokens = 7, TopK = 5 });
        options.StopTokenIds.Should().Equal(128001, 128008, 128009);
        options.Temperature.Should().Be(0.6);
        options.TopP.Should().Be(0.9);
        options.TopK.Should().Be(5, "the file does not set it");
        options.MaxNewTokens.Should().Be(7);
        options.Validate().Should().NotBeNull();
    }

    [Fact]
    public void Without_do_sample_generation_stays_greedy_and_a_single_eos_is_a_list_of_one()
    {
        var config = GenerationConfig.FromFile(Fixtures.HfTiny("llama_gqa"))!;   // written by transformers: eos 2, no sampling
        config.EosTokenIds.Should().Equal(2);
        var options = config.ToOptions();
        options.IsSampling.Should().BeFalse();
        options.StopTokenIds.Should().Equal(2);
    }

    [Fact]
    public void A_directory_without_one_gives_null_and_a_bad_file_a_named_error()
    {
        using var directory = new Fixtures.TempDirectory();
        GenerationConfig.FromFile(directory.Path).Should().BeNull();
        string path = Path.Combine(directory.Path, "generation_config.json");
        File.WriteAllText(path, """{"eos_token_id": "two"}""");
        FluentActions.Invoking(() => GenerationConfig.FromFile(path)).Should().Throw<InvalidDataException>().WithMessage("*generation_config.json*eos_token_id*");
        File.WriteAllText(path, new string('[', 100));
        FluentActions.Invoking(() => GenerationConfig.FromFile(path)).Should().Throw<InvalidDataException>();
    }
}
