// `varps serve`'s access control: the token file's rules, the bearer check
// and which hosts count as loopback; the server itself refusing what it
// should, in tests/unit/test_serve.cpp.
#include <gtest/gtest.h>

#include "serve/access_tokens.hpp"
#include "unit/test_files.hpp"
#include "varps/error.hpp"

namespace varps {
namespace {

using serve::Access;
using test::TempDir;
using serve::AccessTokens;

TEST(AccessTokens, ReadsOneTokenALineSkippingCommentsAndBlankLines) {
  TempDir dir;
  test::write_bytes(dir / "tokens", "# the build robot\n  alpha-123 \n\n\tbeta_XYZ\r\n# old: gamma\n");
  const AccessTokens t = AccessTokens::load(dir / "tokens");
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.check("Bearer alpha-123"), Access::Granted);
  EXPECT_EQ(t.check("Bearer beta_XYZ"), Access::Granted);
  EXPECT_EQ(t.check("  Bearer   beta_XYZ  "), Access::Granted);
  EXPECT_EQ(t.check("Bearer gamma"), Access::Refused) << "a commented-out token";
}

TEST(AccessTokens, RefusesAFileItCannotUseNamingIt) {
  TempDir dir;
  const auto message = [&](const std::string& content) {
    test::write_bytes(dir / "tokens", content);
    try {
      AccessTokens::load(dir / "tokens");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message("# nothing\n\n").find("holds no token"), std::string::npos);
  EXPECT_NE(message("").find("holds no token"), std::string::npos);
  EXPECT_NE(message("ok\nwith space\n").find("line 2"), std::string::npos);
  EXPECT_NE(message("caf\xc3\xa9\n").find("printable ASCII"), std::string::npos);
  try {
    AccessTokens::load(dir / "missing");
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(AccessTokens, AnswersMissingAndRefusedCredentialsApart) {
  const AccessTokens t({"s3cret", "other"});
  EXPECT_EQ(t.check(""), Access::Missing);
  EXPECT_EQ(t.check("   "), Access::Missing);
  EXPECT_EQ(t.check("Bearer s3cret"), Access::Granted);
  EXPECT_EQ(t.check("Bearer other"), Access::Granted);
  EXPECT_EQ(t.check("Bearer s3cre"), Access::Refused) << "a prefix";
  EXPECT_EQ(t.check("Bearer s3crett"), Access::Refused) << "longer";
  EXPECT_EQ(t.check("Bearer S3CRET"), Access::Refused) << "tokens are case-sensitive";
  EXPECT_EQ(t.check("Bearer "), Access::Refused);
  EXPECT_EQ(t.check("Basic czNjcmV0"), Access::Refused) << "another scheme";
  EXPECT_EQ(t.check("s3cret"), Access::Refused) << "no scheme";
}

TEST(AccessTokens, LoopbackHostsAreTheMachinesOwn) {
  for (const char* h : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) EXPECT_TRUE(serve::is_loopback_host(h)) << h;
  for (const char* h : {"0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "128.0.0.1", ""})
    EXPECT_FALSE(serve::is_loopback_host(h)) << h;
}

}  // namespace
}  // namespace varps
