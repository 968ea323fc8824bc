"""WTForms classes; flask-wtf adds the CSRF token to each."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError as FieldError


def _printable(_form, field) -> None:
    # No account name holds control characters, and PostgreSQL refuses a NUL in any text
    # parameter: such a name is a wrong name, refused before it reaches a query.
    if field.data and not field.data.isprintable():
        raise FieldError(f"{field.label.text} must not contain control characters.")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=254), _printable],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired()],
                                 render_kw={"autocomplete": "new-password"})


class ConfirmPasswordForm(FlaskForm):
    """Re-entering the password before a sensitive change (``/login/confirm``)."""

    password = PasswordField("Password", validators=[DataRequired(message="Password is required."), Length(max=1024)],
                             render_kw={"autocomplete": "current-password", "autofocus": True})


class TotpCodeForm(FlaskForm):
    """A six-digit code from an authenticator app (sign-in, enrolment, turning it off)."""

    code = StringField("Code", validators=[DataRequired(message="Code is required."), Length(max=20)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false",
                                  "autocapitalize": "off", "pattern": "[0-9 ]*", "maxlength": 20})


class ProjectForm(FlaskForm):
    organisation = SelectField("Organisation", coerce=int, validate_choice=True)
    name = StringField("Project name", render_kw={"autocomplete": "off", "spellcheck": "false"})
    description = TextAreaField("Description", validators=[Length(max=2000)], render_kw={"rows": 3})


_PREDICATES = ("is", "must", "may")


def add_service_error(form: FlaskForm, exc) -> None:
    """Show a service's ``ValidationError`` under the field it names, as a sentence:
    "is required" becomes "Project name is required."; a message with its own subject
    ("acme/web already exists") is shown as it is."""
    field = getattr(form, exc.field)
    message = exc.message
    if message.split(" ", 1)[0] in _PREDICATES:
        message = f"{field.label.text} {message}"
    field.errors.append(message + ".")


# -- project variables and pipeline settings (webapp/variables.py) -------------------------

from wtforms import BooleanField, IntegerField  # noqa: E402
from wtforms.validators import InputRequired, NumberRange  # noqa: E402


def _unix_newlines(value):
    # Browsers send a textarea's line breaks as CRLF; a variable means LF (and a secret may
    # not hold \r at all: it rewrites a terminal line, so the log masker could miss it).
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class VariableValueForm(FlaskForm):
    """The edit form of one variable: its name is in the URL and does not change."""

    value = TextAreaField("Value", filters=[_unix_newlines],
                          render_kw={"rows": 3, "autocomplete": "off", "spellcheck": "false",
                                     "autocapitalize": "off"})
    secret = BooleanField("Secret")


class VariableForm(VariableValueForm):
    """The add form: a name, a value, and whether the value is a secret."""

    name = StringField("Name", filters=[_strip], validators=[Length(max=100)],
                       render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"})


class _WholeNumberField(IntegerField):
    """An IntegerField whose parse error names the field."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(f"{self.label.text} must be a whole number.") from None


class PipelineSettingsForm(FlaskForm):
    job_concurrency = _WholeNumberField(
        "Jobs running at once",
        validators=[InputRequired(message="Jobs running at once is required."),
                    NumberRange(min=0, max=1000, message="Jobs running at once must be between 0 and 1000.")],
        render_kw={"inputmode": "numeric", "min": 0, "max": 1000})
    cancel_superseded = BooleanField("Cancel superseded runs")
