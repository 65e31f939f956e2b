using System.Text;
using Kiln.IO;
using Xunit;

namespace Kiln.Tests.IO;

public class TokenizerTests
{
    [Fact]
    public void Byte_level_tokenizer_json_encodes_utf8_bytes_and_round_trips()
    {
        var tok = HfTokenizer.Parse(HfTokenizer.ByteLevelJson(["<|endoftext|>"]));
        const string text = "We the People, 1787 — naïve\nline two";
        var ids = tok.EncodeToIds(text);
        Assert.Equal(Encoding.UTF8.GetBytes(text).Select(b => (int)b), ids);
        Assert.Equal(text, tok.Decode(ids));
        Assert.Equal([256], tok.EncodeToIds("<|endoftext|>"));
    }

    [Fact]
    public void Merges_from_the_file_are_applied()
    {
        var map = HfTokenizer.ByteToChar();
        var json = System.Text.Json.Nodes.JsonNode.Parse(HfTokenizer.ByteLevelJson([]))!;
        json["model"]!["vocab"]![$"{map[' ']}t"] = 256;
        json["model"]!["vocab"]![$"{map[' ']}th"] = 257;
        json["model"]!["vocab"]!["he"] = 258;
        json["model"]!["merges"] = new System.Text.Json.Nodes.JsonArray($"{map[' ']} t", $"{map[' ']}t h", "h e");
        var tok = HfTokenizer.Parse(json.ToJsonString());
        Assert.Equal(['a', 257, 'e'], tok.EncodeToIds("a the"));
    }

    [Fact]
    public void Malformed_or_unsupported_files_are_named()
    {
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("{\"model\": "));
        Assert.Contains("WordPiece", Assert.Throws<NotSupportedException>(() => HfTokenizer.Parse("""{"model": {"type": "WordPiece", "vocab": {}}}""")).Message);
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": "BPE"}}"""));
        Assert.Throws<InvalidDataException>(() => HfTokenizer.Parse("""{"model": {"type": "BPE", "vocab": {"a": "x"}}}"""));
        Assert.Throws<FileNotFoundException>(() => HfTokenizer.Load("/nonexistent/tokenizer.json"));
    }
}
