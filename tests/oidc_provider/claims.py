from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupClaims(OAuth2Validator):
    """The claims of an identity provider that sends groups: the user's names, email and Django groups,
    whatever scopes were asked for (django-oauth-toolkit otherwise sends only the claims of a scope)."""

    oidc_claim_scope = None

    def get_additional_claims(self, request):
        user = request.user
        return {
            "preferred_username": user.username,
            "email": user.email,
            "given_name": user.first_name,
            "groups": sorted(group.name for group in user.groups.all()),
        }
