"""WhatsApp templates: parameters counted from the components, the checks before Meta is asked,
and what policy keeps of a template across updates (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from parley_events import (
    ChannelTemplateCategoryChanged,
    ChannelTemplateQualityChanged,
    ChannelTemplateStatusChanged,
    Provider,
)
from parley_policy.adapters.stores import template_after
from parley_policy.domain.decision import TemplateInfo
from parley_providers.whatsapp.profile import profile_problem
from parley_providers.whatsapp.templates import (
    parameter_count,
    parameter_names,
    template_from_graph,
    template_problem,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "BODY", "text": text, **extra}


def header(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "HEADER", "format": "TEXT", "text": text, **extra}


def test_positional_parameters_are_counted() -> None:
    assert parameter_count([body("Hi {{1}}, order {{2}} ships on {{3}}.")]) == 3


def test_named_parameters_are_counted_in_order() -> None:
    components = [body("Hi {{first_name}}, order {{order_id}} is ready.")]
    assert parameter_names(components) == ["first_name", "order_id"]
    assert parameter_count(components) == 2


def test_header_and_body_parameters_add_up_header_first() -> None:
    components = [header("Sale: {{1}}"), body("Use {{1}} before {{2}}."), {"type": "FOOTER", "text": "Bye"}]
    assert parameter_names(components) == ["1", "1", "2"]
    assert parameter_count(components) == 3


def test_a_template_without_parameters_counts_none() -> None:
    components = [
        header("Hello"),
        body("Your order shipped."),
        {"type": "FOOTER", "text": "{{1}} is not read"},
    ]
    assert parameter_count(components) == 0


def test_a_parameter_written_twice_in_one_text_is_one_value() -> None:
    assert parameter_count([body("{{1}} and again {{1}}, then {{2}}")]) == 2


def test_a_media_header_takes_no_text_value() -> None:
    components = [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["h"]}},
        body("Hi {{1}}"),
    ]
    assert parameter_count(components) == 1


def test_lowercase_component_types_count_too() -> None:
    assert parameter_count([{"type": "body", "text": "Hi {{1}}"}]) == 1


@pytest.mark.parametrize(
    ("name", "category", "components", "fmt", "field"),
    [
        ("Order Update", "UTILITY", [body("Hi")], None, "name"),
        ("order_update", "PROMOTION", [body("Hi")], None, "category"),
        ("order_update", "UTILITY", [header("Hi")], None, "components"),
        (
            "order_update",
            "UTILITY",
            [body("Hi {{name}}", example={"body_text": [["x"]]})],
            None,
            "components",
        ),
        ("order_update", "UTILITY", [body("Hi {{1}}", example={"x": 1})], "NAMED", "components"),
        ("order_update", "UTILITY", [body("Hi {{2}}", example={"body_text": [["x"]]})], None, "components"),
        ("order_update", "UTILITY", [body("Hi {{1}}")], None, "components"),
    ],
    ids=["name", "category", "no-body", "named-without-format", "numbers-when-named", "gap", "no-example"],
)
def test_templates_meta_would_refuse_are_refused_first(
    name: str, category: str, components: list[dict[str, Any]], fmt: str | None, field: str
) -> None:
    problem = template_problem(name, category, components, fmt)
    assert problem is not None
    assert problem.field == field


def test_a_well_formed_template_passes() -> None:
    components = [
        header("{{1}} sale", example={"header_text": ["Spring"]}),
        body("Hi {{1}}, use {{2}}", example={"body_text": [["Ada", "SPRING10"]]}),
    ]
    assert template_problem("spring_sale", "MARKETING", components) is None
    named = [body("Hi {{first_name}}", example={"body_text_named_params": [{"param_name": "first_name"}]})]
    assert template_problem("greeting", "UTILITY", named, "NAMED") is None


def test_a_listed_template_is_read_with_its_parameters_counted() -> None:
    template = template_from_graph(
        {
            "id": "8000000000000001",
            "name": "order_update",
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "components": [header("Order {{1}}"), body("Hi {{1}}, it ships {{2}}")],
            "quality_score": {"score": "GREEN"},
            "rejected_reason": "NONE",
        }
    )
    assert (template.id, template.status, template.category, template.parameter_count) == (
        "8000000000000001",
        "APPROVED",
        "UTILITY",
        3,
    )
    assert (template.quality_score, template.rejected_reason) == ("GREEN", None)


def _status(
    status: str, count: int | None = None, category: str | None = None, quality: str | None = None
) -> ChannelTemplateStatusChanged:
    return ChannelTemplateStatusChanged(
        event_id="e",
        channel_id="ch",
        tenant_id="t",
        provider=Provider.WHATSAPP,
        occurred_at=AT,
        template_name="order_update",
        language="en_US",
        status=status,
        parameter_count=count,
        category=category,
        quality=quality,
    )


def _quality(quality: str) -> ChannelTemplateQualityChanged:
    return ChannelTemplateQualityChanged(
        event_id="e",
        channel_id="ch",
        tenant_id="t",
        provider=Provider.WHATSAPP,
        occurred_at=AT,
        template_name="order_update",
        language="en_US",
        quality=quality,
    )


def test_a_quality_rating_keeps_the_status_count_and_category() -> None:
    rated = template_after(TemplateInfo("APPROVED", 1, "UTILITY"), _quality("YELLOW"))
    assert rated == TemplateInfo("APPROVED", 1, "UTILITY", "YELLOW")


def test_a_review_keeps_the_rating_and_a_listing_gives_a_new_one() -> None:
    rated = TemplateInfo("APPROVED", 1, "UTILITY", "RED")
    assert template_after(rated, _status("PAUSED")) == TemplateInfo("PAUSED", 1, "UTILITY", "RED")
    assert template_after(rated, _status("APPROVED", quality="GREEN")).quality == "GREEN"


def test_a_rating_before_any_review_is_kept_for_the_review() -> None:
    rated = template_after(None, _quality("GREEN"))
    assert template_after(rated, _status("APPROVED", 2)) == TemplateInfo("APPROVED", 2, None, "GREEN")


def test_a_review_keeps_the_count_and_category_registered_at_creation() -> None:
    created = template_after(None, _status("PENDING", 2, "UTILITY"))
    approved = template_after(created, _status("APPROVED"))
    assert approved == TemplateInfo("APPROVED", 2, "UTILITY")


def test_a_category_change_keeps_the_status_and_count() -> None:
    change = ChannelTemplateCategoryChanged(
        event_id="e",
        channel_id="ch",
        tenant_id="t",
        provider=Provider.WHATSAPP,
        occurred_at=AT,
        template_name="order_update",
        language="en_US",
        category="AUTHENTICATION",
    )
    assert template_after(TemplateInfo("APPROVED", 1, "UTILITY"), change) == TemplateInfo(
        "APPROVED", 1, "AUTHENTICATION"
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"about": ""}, "about"),
        ({"about": "x" * 140}, "about"),
        ({"address": "x" * 257}, "address"),
        ({"description": "x" * 513}, "description"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@" + "b" * 130 + ".example"}, "email"),
        ({"websites": ["https://a.example", "https://b.example", "https://c.example"]}, "websites"),
        ({"websites": ["acme.example"]}, "websites"),
        ({"websites": ["https://" + "a" * 250]}, "websites"),
        ({"vertical": "SPACESHIPS"}, "vertical"),
    ],
)
def test_profile_fields_whatsapp_refuses_are_named(fields: dict[str, Any], field: str) -> None:
    problem = profile_problem(fields)
    assert problem is not None
    assert problem[0] == field


def test_a_profile_within_whatsapps_limits_passes() -> None:
    fields = {
        "about": "x" * 139,
        "address": "x" * 256,
        "description": "x" * 512,
        "email": "hello@acme.example",
        "websites": ["https://acme.example", "http://shop.acme.example"],
        "vertical": "RETAIL",
    }
    assert profile_problem(fields) is None
    assert profile_problem({}) is None
