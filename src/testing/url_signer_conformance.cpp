#include <exportengine/testing/url_signer_conformance.hpp>
