"""The data loader behind the factory's boto3 sessions loads what botocore's
own loads, without listing every service to load one."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from chalicelib import factory


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("s3", "service-2"),
        ("s3", "endpoint-rule-set-1"),
        ("dynamodb", "service-2"),
        ("sqs", "service-2"),
    ],
)
def test_models_load_as_botocore_loads_them(service: str, kind: str) -> None:
    ours, botocores = factory._Loader(), Loader()
    # The same content in the same order (dicts here, OrderedDicts there).
    assert json.dumps(ours.load_service_model(service, kind)) == json.dumps(
        botocores.load_service_model(service, kind)
    )
    assert json.dumps(ours.load_data("endpoints")) == json.dumps(botocores.load_data("endpoints"))


def test_a_known_service_is_found_without_listing_every_service() -> None:
    services = factory._Loader().list_available_services("service-2")
    assert "s3" in services and "dynamodb" in services
    assert "no-such-service" not in services
    assert "_all" not in vars(services)  # nothing listed to answer those
    assert list(services) == Loader().list_available_services("service-2")  # when iterated
    assert len(services) == len(list(services))


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownServiceError, match=r"Valid service names are: .*dynamodb"):
        factory.session().client("no-such-service", region_name="us-east-1")  # type: ignore[call-overload]


def test_the_process_clients_come_from_a_session_with_that_loader() -> None:
    with factory._DEFAULT_SESSION:
        session = factory._default_session()
    assert isinstance(session._session.get_component("data_loader"), factory._Loader)
    assert session is factory._default_session()  # one per process
