// Actions as data: validate_params, render_template and validate_action.
#include <gtest/gtest.h>

#include <string>

#include "jobs/jobs.hpp"

namespace aviary::jobs {
namespace {

/// upgrade NODE TAG [replicas] [dry_run] [channel]: one param of every type.
ActionSpec upgrade_action() {
    ActionSpec action;
    action.name = "upgrade";
    action.params = {
        ParamSpec{.name = "release", .type = ParamType::kDnsLabel},
        ParamSpec{.name = "tag", .type = ParamType::kImageTag},
        ParamSpec{.name = "replicas",
                  .type = ParamType::kInteger,
                  .required = false,
                  .default_value = "1"},
        ParamSpec{.name = "dry_run", .type = ParamType::kBoolean, .required = false},
        ParamSpec{.name = "channel",
                  .type = ParamType::kString,
                  .pattern = "(stable|beta)",
                  .required = false,
                  .default_value = "stable"},
    };
    action.steps = {StepSpec{
        .name = "upgrade",
        .kind = StepKind::kRun,
        .argv = {"helm", "upgrade", "{{params.release}}", "--set", "image.tag={{params.tag}}"}}};
    return action;
}

core::Params valid_params() {
    return {{"release", "lotus-0"}, {"tag", "v1.2.3"}};
}

core::Result<core::Params> with(std::string name, std::string value) {
    auto params = valid_params();
    params[name] = std::move(value);
    return validate_params(upgrade_action(), params);
}

TEST(JobParams, FillsDefaultsOfOptionalParams) {
    auto params = validate_params(upgrade_action(), valid_params());
    ASSERT_TRUE(params) << params.error().message;
    EXPECT_EQ(params->at("release"), "lotus-0");
    EXPECT_EQ(params->at("tag"), "v1.2.3");
    EXPECT_EQ(params->at("replicas"), "1");
    EXPECT_EQ(params->at("channel"), "stable");
    // Optional without a default: absent, not an empty value.
    EXPECT_EQ(params->count("dry_run"), 0U);
}

TEST(JobParams, GivenValuesWinOverDefaults) {
    auto params = with("replicas", "3");
    ASSERT_TRUE(params) << params.error().message;
    EXPECT_EQ(params->at("replicas"), "3");
}

TEST(JobParams, MissingRequiredParamIsNamed) {
    auto params = validate_params(upgrade_action(), core::Params{{"release", "lotus-0"}});
    ASSERT_FALSE(params);
    EXPECT_EQ(params.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(params.error().message.find("params.tag"), std::string::npos)
        << params.error().message;
    EXPECT_NE(params.error().message.find("required"), std::string::npos) << params.error().message;
}

TEST(JobParams, UnknownParamIsNamedWithTheKnownOnes) {
    auto params = with("tg", "v1");
    ASSERT_FALSE(params);
    EXPECT_EQ(params.error().code, core::ErrorCode::kInvalidArgument);
    const auto& message = params.error().message;
    EXPECT_NE(message.find("params.tg"), std::string::npos) << message;
    for (const char* known : {"release", "tag", "replicas", "dry_run", "channel"}) {
        EXPECT_NE(message.find(known), std::string::npos) << known << " in " << message;
    }
}

TEST(JobParams, ActionWithoutParamsSaysItTakesNone) {
    ActionSpec action{.name = "restart", .steps = {StepSpec{.name = "noop"}}};
    auto params = validate_params(action, core::Params{{"force", "true"}});
    ASSERT_FALSE(params);
    EXPECT_NE(params.error().message.find("none"), std::string::npos) << params.error().message;
}

TEST(JobParams, DnsLabelRefusesShellInjection) {
    auto params = with("release", "lotus-0;touch X");
    ASSERT_FALSE(params);
    EXPECT_EQ(params.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(params.error().message.find("params.release"), std::string::npos);
    EXPECT_NE(params.error().message.find("DNS-1123"), std::string::npos) << params.error().message;
}

TEST(JobParams, DnsLabelRules) {
    EXPECT_TRUE(with("release", "a"));
    EXPECT_TRUE(with("release", "lotus-10"));
    EXPECT_TRUE(with("release", std::string(63, 'a')));
    EXPECT_FALSE(with("release", std::string(64, 'a')));
    EXPECT_FALSE(with("release", ""));
    EXPECT_FALSE(with("release", "Lotus-0"));
    EXPECT_FALSE(with("release", "-lotus"));
    EXPECT_FALSE(with("release", "lotus-"));
    EXPECT_FALSE(with("release", "lotus_0"));
    EXPECT_FALSE(with("release", "lotus.0"));
    EXPECT_FALSE(with("release", "lotus 0"));
}

TEST(JobParams, ImageTagFollowsTheRegex) {
    EXPECT_TRUE(with("tag", "v1.2.3"));
    EXPECT_TRUE(with("tag", "latest"));
    EXPECT_TRUE(with("tag", "_build-7.rc_1"));
    EXPECT_TRUE(with("tag", "A"));
    EXPECT_TRUE(with("tag", std::string(128, 'a')));
    EXPECT_FALSE(with("tag", std::string(129, 'a')));
    EXPECT_FALSE(with("tag", ""));
    EXPECT_FALSE(with("tag", ".hidden"));
    EXPECT_FALSE(with("tag", "-rc1"));
    EXPECT_FALSE(with("tag", "v1;rm -rf /"));
    EXPECT_FALSE(with("tag", "v1/../x"));
    EXPECT_FALSE(with("tag", "v1:2"));
    auto bad = with("tag", "$(id)");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("params.tag"), std::string::npos);
    EXPECT_NE(bad.error().message.find("image tag"), std::string::npos) << bad.error().message;
}

TEST(JobParams, IntegerMustBeAWholeNumber) {
    EXPECT_TRUE(with("replicas", "0"));
    EXPECT_FALSE(with("replicas", "-4"));  // could become an option: see LeadingDash below
    EXPECT_TRUE(with("replicas", "123456789"));
    EXPECT_FALSE(with("replicas", ""));
    EXPECT_FALSE(with("replicas", "1.5"));
    EXPECT_FALSE(with("replicas", "3 "));
    EXPECT_FALSE(with("replicas", "0x10"));
    EXPECT_FALSE(with("replicas", "99999999999999999999999"));
    auto bad = with("replicas", "three");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("params.replicas"), std::string::npos);
    EXPECT_NE(bad.error().message.find("integer"), std::string::npos) << bad.error().message;
}

TEST(JobParams, BooleanIsTrueOrFalse) {
    EXPECT_TRUE(with("dry_run", "true"));
    EXPECT_TRUE(with("dry_run", "false"));
    EXPECT_FALSE(with("dry_run", "yes"));
    EXPECT_FALSE(with("dry_run", "1"));
    EXPECT_FALSE(with("dry_run", "True"));
}

TEST(JobParams, StringPatternMustMatchTheWholeValue) {
    EXPECT_TRUE(with("channel", "beta"));
    EXPECT_FALSE(with("channel", "betamax"));
    EXPECT_FALSE(with("channel", "nightly"));
    auto bad = with("channel", "x-beta");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("params.channel"), std::string::npos);
    EXPECT_NE(bad.error().message.find("(stable|beta)"), std::string::npos) << bad.error().message;
}

TEST(JobParams, StringWithoutPatternTakesAnyTextButNul) {
    ActionSpec action{
        .name = "say", .params = {ParamSpec{.name = "text"}}, .steps = {StepSpec{.name = "noop"}}};
    EXPECT_TRUE(validate_params(action, {{"text", "lotus-0;touch X $(id) `id` | &&"}}));
    EXPECT_FALSE(validate_params(action, {{"text", std::string("a\0b", 3)}}));
}

TEST(JobParams, LongBadValueIsShortenedInTheMessage) {
    auto bad = with("release", std::string(500, 'A'));
    ASSERT_FALSE(bad);
    EXPECT_LT(bad.error().message.size(), 300U) << bad.error().message;
}

TEST(JobParams, StringLongerThanTheDefaultCapIsRefusedNamingTheParam) {
    ActionSpec action{
        .name = "say", .params = {ParamSpec{.name = "text"}}, .steps = {StepSpec{.name = "noop"}}};
    EXPECT_TRUE(validate_params(action, {{"text", std::string(kDefaultParamMaxLength, 'a')}}));
    auto bad = validate_params(action, {{"text", std::string(kDefaultParamMaxLength + 1, 'a')}});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(bad.error().message.find("params.text"), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("longer than 256"), std::string::npos)
        << bad.error().message;
}

TEST(JobParams, MaxLengthIsSettablePerParam) {
    ActionSpec action{.name = "say",
                      .params = {ParamSpec{.name = "text", .max_length = 1000}},
                      .steps = {StepSpec{.name = "noop"}}};
    EXPECT_TRUE(validate_params(action, {{"text", std::string(1000, 'a')}}));
    EXPECT_FALSE(validate_params(action, {{"text", std::string(1001, 'a')}}));
}

TEST(JobParams, HugeValueIsRefusedByLengthBeforeThePatternRuns) {
    // A recursive matcher on a value this long would overflow the stack.
    ActionSpec action{.name = "say",
                      .params = {ParamSpec{.name = "text", .pattern = "(a|b)*"}},
                      .steps = {StepSpec{.name = "noop"}}};
    auto bad = validate_params(action, {{"text", std::string(1 << 20, 'a')}});
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("longer than"), std::string::npos) << bad.error().message;
    EXPECT_TRUE(validate_params(action, {{"text", "abba"}}));
}

TEST(JobParams, LeadingDashIsRefusedUnlessTheParamAllowsIt) {
    ActionSpec action{
        .name = "say",
        .params = {ParamSpec{.name = "text"},
                   ParamSpec{.name = "flags", .required = false, .allow_leading_dash = true}},
        .steps = {StepSpec{.name = "noop"}}};
    auto bad = validate_params(action, {{"text", "--output=/etc/passwd"}});
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("params.text"), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("allow_leading_dash"), std::string::npos)
        << bad.error().message;
    EXPECT_TRUE(validate_params(action, {{"text", "a-b"}, {"flags", "--verbose"}}));
    EXPECT_TRUE(with("replicas", "4"));
}

// ---------------------------------------------------------------------------------------------

core::Job job_for_templates() {
    core::Job job;
    job.id = "01JOB";
    job.node = "lotus-0";
    job.params = {{"tag", "v2"}, {"text", "a b;c"}};
    return job;
}

TEST(JobTemplate, FillsNodeParamsAndJobId) {
    auto job = job_for_templates();
    EXPECT_EQ(render_template("{{node}}", job).value(), "lotus-0");
    EXPECT_EQ(render_template("image.tag={{params.tag}}", job).value(), "image.tag=v2");
    EXPECT_EQ(render_template("{{ job.id }}-{{node}}", job).value(), "01JOB-lotus-0");
    EXPECT_EQ(render_template("plain text", job).value(), "plain text");
    EXPECT_EQ(render_template("", job).value(), "");
}

TEST(JobTemplate, ValuesAreInsertedVerbatimNotInterpreted) {
    auto job = job_for_templates();
    EXPECT_EQ(render_template("{{params.text}}", job).value(), "a b;c");
    // A value that looks like a placeholder is not expanded again.
    job.params["text"] = "{{node}}";
    EXPECT_EQ(render_template("x{{params.text}}", job).value(), "x{{node}}");
}

TEST(JobTemplate, OptionalParamWithoutValueRendersEmpty) {
    auto job = job_for_templates();
    EXPECT_EQ(render_template("--flag={{params.absent}}", job).value(), "--flag=");
}

TEST(JobTemplate, UnknownPlaceholderIsAnError) {
    auto job = job_for_templates();
    auto rendered = render_template("{{nodes}}", job);
    ASSERT_FALSE(rendered);
    EXPECT_EQ(rendered.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(rendered.error().message.find("nodes"), std::string::npos)
        << rendered.error().message;
    EXPECT_FALSE(render_template("{{job.node}}", job));
}

TEST(JobTemplate, UnclosedPlaceholderIsAnError) {
    auto rendered = render_template("{{node", job_for_templates());
    ASSERT_FALSE(rendered);
    EXPECT_EQ(rendered.error().code, core::ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------

TEST(JobAction, AcceptsAWellFormedAction) {
    auto valid = validate_action(upgrade_action());
    EXPECT_TRUE(valid) << valid.error().message;
}

TEST(JobAction, RefusesAnActionWithoutSteps) {
    auto action = upgrade_action();
    action.steps.clear();
    auto valid = validate_action(action);
    ASSERT_FALSE(valid);
    EXPECT_EQ(valid.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(valid.error().message.find("action \"upgrade\""), std::string::npos);
    EXPECT_NE(valid.error().message.find("steps"), std::string::npos) << valid.error().message;
}

TEST(JobAction, RefusesAnUnknownParamInARunArgvNamingTheStepAndArgument) {
    auto action = upgrade_action();
    action.steps.push_back(StepSpec{
        .name = "check", .kind = StepKind::kRun, .argv = {"helm", "status", "{{params.tg}}"}});
    auto valid = validate_action(action);
    ASSERT_FALSE(valid);
    const auto& message = valid.error().message;
    EXPECT_NE(message.find("action \"upgrade\""), std::string::npos) << message;
    EXPECT_NE(message.find("steps[1]"), std::string::npos) << message;
    EXPECT_NE(message.find("[2]"), std::string::npos) << message;
    EXPECT_NE(message.find("unknown param \"tg\""), std::string::npos) << message;
}

TEST(JobAction, RefusesAnUnknownPlaceholderAndAnUnclosedOne) {
    auto action = upgrade_action();
    action.steps[0].argv.push_back("{{release}}");
    auto unknown = validate_action(action);
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("unknown placeholder"), std::string::npos)
        << unknown.error().message;

    action = upgrade_action();
    action.steps[0].argv.push_back("{{node");
    auto unclosed = validate_action(action);
    ASSERT_FALSE(unclosed);
    EXPECT_NE(unclosed.error().message.find("unclosed"), std::string::npos)
        << unclosed.error().message;
}

TEST(JobAction, RefusesUnknownParamsInEnvAndDriverImageTag) {
    auto action = upgrade_action();
    action.steps[0].env = {{"TAG", "{{params.nope}}"}};
    auto env = validate_action(action);
    ASSERT_FALSE(env);
    EXPECT_NE(env.error().message.find("env.TAG"), std::string::npos) << env.error().message;

    action = upgrade_action();
    action.steps.push_back(StepSpec{.name = "upgrade",
                                    .kind = StepKind::kDriver,
                                    .op = drivers::Op::kUpgrade,
                                    .image_tag = "{{params.image}}"});
    auto driver = validate_action(action);
    ASSERT_FALSE(driver);
    EXPECT_NE(driver.error().message.find("image_tag"), std::string::npos)
        << driver.error().message;
}

TEST(JobAction, RefusesBadNames) {
    for (const char* name : {"", "Upgrade", "up_grade", "-upgrade", "upgrade now"}) {
        auto action = upgrade_action();
        action.name = name;
        auto valid = validate_action(action);
        ASSERT_FALSE(valid) << name;
        EXPECT_NE(valid.error().message.find("DNS-1123"), std::string::npos)
            << valid.error().message;
    }
    auto action = upgrade_action();
    action.params.push_back(ParamSpec{.name = "Image"});
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.params.push_back(ParamSpec{.name = "node"});
    EXPECT_FALSE(validate_action(action)) << "node is the node, not a param";
    action = upgrade_action();
    action.params.push_back(ParamSpec{.name = "tag"});
    auto twice = validate_action(action);
    ASSERT_FALSE(twice);
    EXPECT_NE(twice.error().message.find("twice"), std::string::npos);
    action = upgrade_action();
    action.queue = "Slow Queue";
    EXPECT_FALSE(validate_action(action));
}

TEST(JobAction, RefusesBadNumbersAndPatterns) {
    auto action = upgrade_action();
    action.max_attempts = 0;
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.timeout = core::Millis{0};
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.retry_backoff_max = action.retry_backoff - core::Millis{1};
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.concurrency = -1;
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.params[4].pattern = "(unclosed";
    auto pattern = validate_action(action);
    ASSERT_FALSE(pattern);
    EXPECT_NE(pattern.error().message.find("params.channel.pattern"), std::string::npos)
        << pattern.error().message;
    action = upgrade_action();
    action.params[4].max_length = 0;
    EXPECT_FALSE(validate_action(action));
    action.params[4].max_length = kParamMaxLengthLimit + 1;
    auto length = validate_action(action);
    ASSERT_FALSE(length);
    EXPECT_NE(length.error().message.find("params.channel.max_length"), std::string::npos)
        << length.error().message;
    action = upgrade_action();
    action.params[2].default_value = "many";
    auto fallback = validate_action(action);
    ASSERT_FALSE(fallback);
    EXPECT_NE(fallback.error().message.find("params.replicas.default"), std::string::npos)
        << fallback.error().message;
}

TEST(JobAction, RefusesARunStepWithoutAProgramAndAWaitWithoutInterval) {
    auto action = upgrade_action();
    action.steps[0].argv.clear();
    EXPECT_FALSE(validate_action(action));
    action = upgrade_action();
    action.steps.push_back(
        StepSpec{.name = "wait", .kind = StepKind::kWait, .interval = core::Millis{0}});
    auto wait = validate_action(action);
    ASSERT_FALSE(wait);
    EXPECT_NE(wait.error().message.find("steps[1].interval"), std::string::npos)
        << wait.error().message;
}

TEST(JobNames, RoundTrip) {
    for (auto type : {ParamType::kString, ParamType::kDnsLabel, ParamType::kImageTag,
                      ParamType::kInteger, ParamType::kBoolean}) {
        EXPECT_EQ(parse_param_type(to_string(type)), type);
    }
    for (auto kind : {StepKind::kDriver, StepKind::kRun, StepKind::kWait, StepKind::kNoop}) {
        EXPECT_EQ(parse_step_kind(to_string(kind)), kind);
    }
    for (auto condition :
         {WaitCondition::kRunning, WaitCondition::kSynced, WaitCondition::kHeightAdvancing}) {
        EXPECT_EQ(parse_wait_condition(to_string(condition)), condition);
    }
    EXPECT_FALSE(parse_param_type("float"));
    EXPECT_FALSE(parse_step_kind("shell"));
    EXPECT_EQ(to_string(WaitCondition::kHeightAdvancing), "height-advancing");
}

}  // namespace
}  // namespace aviary::jobs
