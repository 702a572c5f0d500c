//! An exchange's first step: which service a request stream is for (the `ptproxy-service`
//! field, or the default service when it names none) and whether its caller may use it (the
//! service's allow list against the identity of the client's certificate). A request that
//! names an unknown service gets a 404, one its caller may not make a 403, both made here with
//! `Proxy-Status`, logged and counted; neither reaches any upstream.

use quiche::h3::Header as H3Header;

use crate::access::{self, Identity};
use crate::bridge::answers::{self, Answer};
use crate::bridge::headers;
use crate::config::Services;
use crate::metrics::Metrics;

/// The index of the service `list` is for, or the answer refusing it.
pub fn route(
    list: &[H3Header],
    identity: &Identity,
    services: &Services,
    metrics: &mut Metrics,
) -> Result<usize, Answer> {
    let named = headers::service_of(list).map_err(|e| answers::bad_h3_request(e.0))?;
    let Some(index) = services.find(named) else {
        log::info!(
            "request for unknown service {named:?} from {}",
            identity.describe()
        );
        metrics.record_refused(None, "unknown_service");
        return Err(answers::unknown_service(named));
    };
    let service = &services.list[index];
    let (method, path) = headers::method_and_path(list);
    let (method, path) = (
        String::from_utf8_lossy(method),
        String::from_utf8_lossy(path),
    );
    if !access::allows(service.allow.as_deref(), identity, &method, &path) {
        log::info!(
            "access denied: {} may not {method} {path} on service {:?}",
            identity.describe(),
            service.name
        );
        metrics.record_refused(Some(&service.name), "access_denied");
        return Err(answers::access_denied(&identity.describe(), &service.name));
    }
    Ok(index)
}
