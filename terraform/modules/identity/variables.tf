variable "name" {
  description = "Name prefix (e.g. meridian-prod-se): user pool name, client secret names (<name>/identity/<client>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "services" {
  description = "Services that verify tokens. Each gets AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL and AUTH_SCOPE_PREFIX (output service_env)."
  type        = list(string)

  validation {
    condition     = length(var.services) > 0 && alltrue([for s in var.services : can(regex("^[a-z][a-z0-9]{1,14}$", s))])
    error_message = "services must be non-empty lower-case names."
  }
}

variable "oidc" {
  description = <<-EOT
    An existing OIDC provider instead of Cognito: {issuer_url, jwks_url, audiences, scope_prefix}.
    When set, no Cognito resource is created and every service accepts exactly these audiences.
    null (default) = a Cognito user pool per country is the issuer.
  EOT
  type = object({
    issuer_url   = string
    jwks_url     = string
    audiences    = list(string)
    scope_prefix = optional(string, "")
  })
  default = null

  validation {
    condition     = var.oidc == null || can(regex("^https://[^\\s/?#]+[^\\s?#]*$", var.oidc.issuer_url))
    error_message = "oidc.issuer_url must be an https URL (the exact iss of the tokens)."
  }

  validation {
    condition     = var.oidc == null || can(regex("^https://[^\\s/?#]+[^\\s]*$", var.oidc.jwks_url))
    error_message = "oidc.jwks_url must be an https URL: services refuse to fetch signing keys over plain HTTP."
  }

  validation {
    condition     = var.oidc == null ? true : length(var.oidc.audiences) > 0 && alltrue([for a in var.oidc.audiences : can(regex("^[^,\\s]{1,256}$", a))])
    error_message = "oidc.audiences must be a non-empty list of audiences without commas or spaces (AUTH_AUDIENCE is comma-separated)."
  }
}

variable "resource_server_identifier" {
  description = "Cognito resource server identifier. Scopes in tokens are \"<identifier>/<scope>\"; services strip \"<identifier>/\" (AUTH_SCOPE_PREFIX)."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,63}$", var.resource_server_identifier))
    error_message = "resource_server_identifier must be 2-64 lower-case letters, digits or dashes."
  }
}

variable "scopes" {
  description = "Resource server scopes (name => description). A scope is \"<service>:<right>\"; the service part picks which services accept a client that holds it."
  type        = map(string)
  default = {
    "streams:sessions"    = "Act for users on the streams guard (the playback service)"
    "streams:admin"       = "Administer streams: user limits, any user's sessions"
    "calls:admin"         = "Change call routing (PBX flows, subscribers), read the snapshot and audit"
    "learning:admin"      = "Administer learning records"
    "learning:read"       = "Read any learner's learning records (support tooling, the SLO probe); no writes"
    "playlists:analytics" = "Read playlist analytics (removal reasons, shares, retention; counters only)"
    "playlists:admin"     = "Act on any learner's playlists (support tooling)"
    # One user's rights for a service client (a client-credentials token's sub is the client id):
    # only the SLO probe's user is one here.
    "playlists:user-slo-probe" = "Act as the playlists user slo-probe (the SLO probe's own playlists only)"
    "attendance:admin"         = "Administer attendance"
    "attendance:ingest"        = "Ingest page visits (the visits producer); no reads"
    "attendance:read"          = "Read visits and visitors (dashboards, the SLO probe); no writes"
    # Staff of one site hold attendance:site-<site id>; Cognito scopes are fixed, so only the SLO
    # probe's site is one here (staff tokens come from the schools' OIDC issuer, docs/attendance.md).
    "attendance:site-slo-probe" = "Staff of the SLO probe's attendance site (sign-in, sign-out, delete there only)"
  }

  validation {
    condition     = length(var.scopes) > 0 && length(var.scopes) <= 100 && alltrue([for k in keys(var.scopes) : can(regex("^[a-z][a-z0-9]{1,14}:[a-z][a-z0-9-]{0,30}$", k))])
    error_message = "scopes must be 1-100 names of the form <service>:<right>, lower case."
  }
}

variable "clients" {
  description = <<-EOT
    Machine-to-machine app clients (OAuth client credentials), name => {scopes, access_token_validity_minutes}.
    Every client gets a generated secret, stored in Secrets Manager as <name>/identity/<client>.
    A service's AUTH_AUDIENCE lists the clients that hold at least one of its scopes.
  EOT
  type = map(object({
    scopes                        = list(string)
    access_token_validity_minutes = optional(number, 60)
  }))
  default = {
    # The playback service calls the streams guard for its viewers.
    playback = { scopes = ["streams:sessions"] }
    # Operators' and admin tooling's client: every admin scope.
    admin = { scopes = ["streams:admin", "calls:admin", "learning:admin", "playlists:analytics", "playlists:admin", "attendance:admin"] }
    # The visits producer (the consumer of the page-visit topic) posts visits to attendance.
    visits-producer = { scopes = ["attendance:ingest"] }
    # The delivery pipeline's SLO probe (Buildkite slo-gate, operator analysis) exercises the guard,
    # learning's item route (learning:read puts it in learning's AUTH_AUDIENCE), attendance's
    # /visits and a sign-in cycle at its own site, and a playlist cycle as the user slo-probe.
    slo-probe = { scopes = ["streams:sessions", "learning:read", "attendance:read", "attendance:site-slo-probe", "playlists:user-slo-probe"] }
  }

  validation {
    condition     = length(var.clients) > 0 && alltrue([for k in keys(var.clients) : can(regex("^[a-z][a-z0-9-]{1,30}$", k))])
    error_message = "clients must be a non-empty map keyed by lower-case names (2-31 characters)."
  }

  validation {
    condition     = alltrue([for c in values(var.clients) : length(c.scopes) > 0 && alltrue([for s in c.scopes : contains(keys(var.scopes), s)])])
    error_message = "every client needs at least one scope, and only scopes declared in var.scopes."
  }

  validation {
    condition     = alltrue([for c in values(var.clients) : c.access_token_validity_minutes >= 5 && c.access_token_validity_minutes <= 1440])
    error_message = "access_token_validity_minutes must be 5-1440 (Cognito's range)."
  }
}

variable "domain_prefix" {
  description = "Cognito domain prefix of the token endpoint https://<prefix>.auth.<region>.amazoncognito.com/oauth2/token (unique per region). null = var.name."
  type        = string
  default     = null

  validation {
    condition     = var.domain_prefix == null || can(regex("^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", coalesce(var.domain_prefix, "x")))
    error_message = "domain_prefix must be a DNS label (lower case, digits, dashes); Cognito also refuses the words aws, amazon and cognito."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the user pool (its clients' ids are every service's AUTH_AUDIENCE)."
  type        = bool
  default     = true
}

variable "advanced_security_mode" {
  description = "Cognito threat protection (OFF | AUDIT | ENFORCED). It evaluates user sign-ins; this pool issues client-credentials tokens only (no users, self sign-up off), so it is OFF by default. AUDIT/ENFORCED need user_pool_tier = PLUS."
  type        = string
  default     = "OFF"

  validation {
    condition     = contains(["OFF", "AUDIT", "ENFORCED"], var.advanced_security_mode)
    error_message = "advanced_security_mode must be OFF, AUDIT or ENFORCED."
  }
}

variable "user_pool_tier" {
  description = "Cognito feature plan (LITE | ESSENTIALS | PLUS). PLUS is needed for advanced_security_mode other than OFF."
  type        = string
  default     = "ESSENTIALS"

  validation {
    condition     = contains(["LITE", "ESSENTIALS", "PLUS"], var.user_pool_tier)
    error_message = "user_pool_tier must be LITE, ESSENTIALS or PLUS."
  }
}

variable "secrets_kms_key_arn" {
  description = "CMK that encrypts the client secrets in Secrets Manager (the country key of the secrets module)."
  type        = string
}

variable "recovery_window_in_days" {
  description = "Days a deleted client secret stays recoverable."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30
    error_message = "recovery_window_in_days must be 7-30."
  }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}
